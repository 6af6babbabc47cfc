"""The application role: a host logged in as it appends, archives and keeps its views, and
cannot change a recorded event, whatever session settings it sets."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest

import jobstore
import projections
from jobstore import audit, job_events, role
from jobstore.dispatcher import Dispatcher
from projections import checkpoint

WELCOME = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}
FUTURE = datetime.now(UTC) + timedelta(days=1)
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class AppRole:
    name: str
    dsn: str
    """The test's database, logged in as the role with its password."""


def as_user(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


async def drop_role(db_dsn: str, name: str) -> None:
    """Drop a test role: roles are cluster-wide, so none may outlive its test."""
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
        )
        if await conn.fetchval("SELECT to_regrole($1) IS NOT NULL", name):
            await conn.execute(f'DROP OWNED BY "{name}"')  # its privileges in this database
            await conn.execute(f'DROP ROLE "{name}"')
    finally:
        await conn.close()


@pytest.fixture
async def app_role(db_dsn: str) -> AsyncIterator[AppRole]:
    """A LOGIN application role, set up as ``jobtrail db migrate --app-role`` does."""
    name = f"jt_app_{uuid.uuid4().hex[:12]}"
    try:
        assert await role.ensure_app_role(db_dsn, name, PASSWORD) is True
        yield AppRole(name, as_user(db_dsn, name, PASSWORD))
    finally:
        await drop_role(db_dsn, name)


@pytest.fixture
async def app_pool(app_role: AppRole) -> AsyncIterator[asyncpg.Pool]:
    """A host's pool, logged in as the application role."""
    pool = await jobstore.create_pool(app_role.dsn, min_size=1, max_size=4)
    try:
        assert await pool.fetchval("SELECT current_user") == app_role.name
        yield pool
    finally:
        await pool.close()


async def finished_job(dispatcher: Dispatcher) -> str:
    job_id = await dispatcher.enqueue("send-email", WELCOME)
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": "completed"})
    return job_id


CHANGES = [
    "UPDATE jobtrail.events SET data = '{}'",
    "DELETE FROM jobtrail.events",
    "TRUNCATE jobtrail.events",
    "INSERT INTO jobtrail.events_archive (position, stream_id, version, event_type, "
    "schema_version, data, metadata, recorded_at) SELECT position, stream_id, version, "
    "event_type, schema_version, data, metadata, recorded_at FROM jobtrail.events",
    "UPDATE jobtrail.events_archive SET data = '{}'",
    "DELETE FROM jobtrail.events_archive",
    "TRUNCATE jobtrail.events_archive",
]


async def flagged(conn: asyncpg.Connection, statement: str, flag: bool) -> None:
    """Run ``statement`` in a transaction, with the archiving flag set in it if ``flag``."""
    async with conn.transaction():
        if flag:
            await conn.execute("SET LOCAL jobtrail.archiving = 'on'")
        await conn.execute(statement)


@pytest.mark.parametrize("flag", [None, "SET jobtrail.archiving = 'on'"])
async def test_the_app_role_cannot_change_the_log_even_with_the_archiving_flag(
    app_pool: asyncpg.Pool, flag: str | None
) -> None:
    store = jobstore.EventStore(app_pool)
    await finished_job(Dispatcher(store))
    history = await store.read_all(0, 100)
    async with app_pool.acquire() as conn:
        if flag:
            await conn.execute(flag)
        for statement in CHANGES:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await flagged(conn, statement, flag is not None)
    assert await store.read_all(0, 100) == history


async def test_a_role_granted_delete_by_mistake_still_cannot_archive_by_itself(
    app_role: AppRole, db_dsn: str, store: jobstore.EventStore
) -> None:
    """The trigger, not only the grants: the flag lets rows go only for the log's owner."""
    await finished_job(Dispatcher(store))
    owner = await asyncpg.connect(db_dsn)
    try:
        await owner.execute(f'GRANT UPDATE, DELETE ON jobtrail.events TO "{app_role.name}"')
    finally:
        await owner.close()
    conn = await asyncpg.connect(app_role.dsn)
    try:
        await conn.execute("SET jobtrail.archiving = 'on'")
        for statement in CHANGES[:2]:
            with pytest.raises(asyncpg.PostgresError, match="append-only") as caught:
                await conn.execute(statement)
            assert caught.value.sqlstate == "JT002"
    finally:
        await conn.close()
    assert len(await store.read_all(0, 100)) == 3
    report = await role.check_app_role(db_dsn, app_role.name)
    assert report.unsafe == ["can UPDATE/DELETE jobtrail.events"]


async def test_the_app_role_archives_finished_streams_through_the_definer_function(
    app_pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(app_pool)
    dispatcher = Dispatcher(store)
    done = await finished_job(dispatcher)
    running = await dispatcher.enqueue("send-email", WELCOME)
    history = await store.read_stream(f"job-{done}")

    moved = await store.archive_streams([f"job-{done}", f"job-{running}"], FUTURE, 30)

    assert moved == [f"job-{done}"]
    assert await store.read_stream(f"job-{done}") == []
    assert await store.read_archived_stream(f"job-{done}") == history
    assert len(await store.read_stream(f"job-{running}")) == 1
    record = (await store.read_all(0, 1000))[-1]
    assert isinstance(record.event, job_events.StreamsArchived)
    assert record.event.job_ids == [done]
    owner = await asyncpg.connect(db_dsn)
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await owner.execute("DELETE FROM jobtrail.events")  # the owner, without the flag
    finally:
        await owner.close()


async def test_the_callers_search_path_cannot_reach_into_archiving(
    app_role: AppRole, db_dsn: str
) -> None:
    """An operator the role defines in its own schema is not what archive_streams uses."""
    schema = f"{app_role.name}_own"
    owner = await asyncpg.connect(db_dsn)
    try:
        await owner.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{app_role.name}"')
    finally:
        await owner.close()
    conn = await asyncpg.connect(app_role.dsn)
    try:
        store_pool = await jobstore.create_pool(app_role.dsn, min_size=1, max_size=2)
        try:
            done = await finished_job(Dispatcher(jobstore.EventStore(store_pool)))
            assert await audit.chain_through(store_pool), "only chained streams are archived"
        finally:
            await store_pool.close()
        await conn.execute(f"""
            CREATE FUNCTION "{schema}".hijack(text, text) RETURNS boolean
            LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'hijacked as %', current_user; END; $$;
            CREATE OPERATOR "{schema}".~~ (LEFTARG = text, RIGHTARG = text,
                                           FUNCTION = "{schema}".hijack);
            SET search_path = "{schema}", pg_catalog;
        """)
        with pytest.raises(asyncpg.PostgresError, match="hijacked"):
            await conn.fetchval("SELECT 'job-x' LIKE 'job-%'")  # the trap is armed

        moved = await conn.fetch(
            "SELECT * FROM jobtrail.archive_streams($1::text[], $2, 1)", [f"job-{done}"], FUTURE
        )
        assert [row[0] for row in moved] == [f"job-{done}"]
    finally:
        await conn.close()


async def test_a_host_as_the_app_role_keeps_its_views_relay_and_checkpoints(
    app_role: AppRole, app_pool: asyncpg.Pool
) -> None:
    store = jobstore.EventStore(app_pool)
    dispatcher = Dispatcher(store)
    done = await finished_job(dispatcher)
    pending = await dispatcher.enqueue("send-email", WELCOME)

    runner = projections.ProjectionRunner(app_pool, app_role.dsn)
    assert await runner.run_until_caught_up() > 0

    statuses = dict(await app_pool.fetch("SELECT job_id, status FROM jobtrail.job_executions"))
    assert statuses == {done: "completed", pending: "pending"}
    async with app_pool.acquire() as conn, conn.transaction():
        await checkpoint.put(conn, "relay", await store.head())
        await conn.execute(
            "INSERT INTO jobtrail.relay_messages (job_id, dispatch, message_id) "
            "VALUES ($1, 1, 'msg_1')",
            pending,
        )
        await conn.execute("DELETE FROM jobtrail.relay_messages WHERE job_id = $1", pending)
        await conn.execute(
            "INSERT INTO jobtrail.delivery_tokens (token_id, stream_id, expires_at) "
            "VALUES ('jti-1', $1, now() - interval '1 second')",
            f"job-{pending}",
        )
        await conn.execute("DELETE FROM jobtrail.delivery_tokens WHERE expires_at < now()")


async def test_a_rebuild_by_the_owner_keeps_the_app_roles_privileges(
    app_role: AppRole, app_pool: asyncpg.Pool, pool: asyncpg.Pool, db_dsn: str
) -> None:
    await finished_job(Dispatcher(jobstore.EventStore(app_pool)))

    await projections.rebuild(pool, db_dsn)

    assert (await role.check_app_role(db_dsn, app_role.name)).missing == []
    second = await finished_job(Dispatcher(jobstore.EventStore(app_pool)))
    await projections.ProjectionRunner(app_pool, app_role.dsn).run_until_caught_up()
    assert (
        await app_pool.fetchval(
            "SELECT status FROM jobtrail.job_executions WHERE job_id = $1", second
        )
        == "completed"
    )


async def test_check_role_names_what_a_later_table_lacks_until_granted_again(
    app_role: AppRole, db_dsn: str
) -> None:
    report = await role.check_app_role(db_dsn, app_role.name)
    assert (report.safe, report.complete, report.login) == (True, True, True)
    owner = await asyncpg.connect(db_dsn)
    try:
        await owner.execute("CREATE TABLE jobtrail.later_table (id int PRIMARY KEY)")
    finally:
        await owner.close()

    report = await role.check_app_role(db_dsn, app_role.name)
    assert report.safe
    assert report.missing == ["DELETE, INSERT, SELECT, UPDATE on jobtrail.later_table"]

    assert await role.refresh_app_roles(db_dsn) == [app_role.name]
    assert (await role.check_app_role(db_dsn, app_role.name)).complete


async def test_the_log_owner_and_superusers_are_refused_as_app_roles(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        me = await conn.fetchval("SELECT current_user")
    finally:
        await conn.close()
    with pytest.raises(role.AppRoleError, match=r"superuser|owns the event log"):
        await role.ensure_app_role(db_dsn, me)
    report = await role.check_app_role(db_dsn, me)
    assert not report.safe
    assert "can UPDATE/DELETE/TRUNCATE/TRIGGER jobtrail.events" in report.unsafe


@pytest.mark.parametrize(
    "name",
    ["", "App", "1app", "app-role", 'x"; DROP TABLE jobtrail.events; --', "pg_app", "a" * 64],
)
async def test_role_names_are_plain_identifiers(name: str, db_dsn: str) -> None:
    with pytest.raises(role.AppRoleError, match="invalid role name"):
        role.validate_role_name(name)
    conn = await asyncpg.connect(db_dsn)
    try:
        # A name past 63 characters does not even become a ``name`` value.
        with pytest.raises(asyncpg.PostgresError, match=r"invalid role name|identifier too long"):
            await conn.execute("SELECT jobtrail.grant_app_role($1)", name)
    finally:
        await conn.close()


async def test_the_password_verifier_is_the_one_postgresql_computes(db_dsn: str) -> None:
    """The CLI sends a SCRAM secret, never the password: it must be PostgreSQL's own."""
    name = f"jt_scram_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("SET password_encryption = 'scram-sha-256'")
        await conn.execute(f"CREATE ROLE \"{name}\" PASSWORD 'pässwörd 1'")
        stored = await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", name)
    finally:
        await conn.close()
        await drop_role(db_dsn, name)
    salt = base64.b64decode(stored.split("$")[1].split(":")[1])
    assert role.scram_verifier("pässwörd 1", salt=salt) == stored
    assert role.scram_verifier("pässwörd 2", salt=salt) != stored


async def test_a_host_logged_in_as_the_app_role_can_run_its_start_up_migrate(
    app_role: AppRole,
) -> None:
    assert await jobstore.migrate(app_role.dsn) == []
