"""The hashes every append path stores are the chain's exact bytes: recomputed in Python
from version 1 of each stream, for batches of many events and streams, conflicts in a group
commit, streams continued after archiving, and a writer that brings a hash of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import jobstore
from jobstore import audit, audit_verify, role
from tests.events import Noted
from tests.integration.test_app_role import as_user, drop_role
from tests.projection_support import completed, dispatched, new_job_id, started

KEY = audit.AuditKey(b"test-audit-key-0123456789abcdef")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
STORED = """
SELECT stream_id, version, position, xid::text AS xid, event_type, schema_version,
       data::text AS data, metadata::text AS metadata, recorded_at, hash
  FROM (SELECT stream_id, version, position, xid, event_type, schema_version, data, metadata,
               recorded_at, hash FROM jobtrail.events
        UNION ALL
        SELECT stream_id, version, position, xid, event_type, schema_version, data, metadata,
               recorded_at, hash FROM jobtrail.events_archive) e
 ORDER BY stream_id, version
"""


async def recompute(pool: asyncpg.Pool) -> dict[tuple[str, int], bool]:
    """Every stored event (log and archive), and whether its hash is the one Python computes
    for it chained to the hash Python computed for the version before (not the stored one)."""
    matches: dict[tuple[str, int], bool] = {}
    previous: bytes | None = None
    for row in await pool.fetch(STORED):
        version = row["version"]
        if version == 1:
            previous = None
        else:
            assert (row["stream_id"], version - 1) in matches, f"a gap before {dict(row)}"
        expected = audit.event_hash(
            previous,
            row["position"],
            int(row["xid"]),
            row["stream_id"],
            version,
            row["event_type"],
            row["schema_version"],
            row["data"],
            row["metadata"],
            (row["recorded_at"] - EPOCH) // MICROSECOND,
        )
        matches[(row["stream_id"], version)] = bytes(row["hash"]) == expected
        previous = expected
    return matches


async def assert_chained(pool: asyncpg.Pool, expected_events: int) -> None:
    """Every stored hash is Python's, and ``jobtrail audit verify`` says intact."""
    matches = await recompute(pool)
    assert len(matches) == expected_events
    assert [place for place, ok in matches.items() if not ok] == []
    report = await audit_verify.verify(pool, KEY)
    assert report.intact, report.breaks


async def test_a_batch_of_many_events_of_one_stream_is_chained_event_by_event(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    stream = f"job-{new_job_id()}"
    await store.append(stream, [Noted(n=i) for i in range(7)], jobstore.NO_STREAM)
    await store.append(stream, [Noted(n=i) for i in range(7, 12)], 7)

    await assert_chained(pool, 12)


async def test_a_batch_of_several_streams_interleaved_is_chained_per_stream(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """One append_events call whose events alternate between streams, two of which already
    have events: each event chains to its own stream's previous one."""
    a, b, c = (f"job-{new_job_id()}" for _ in range(3))
    await store.append_streams(
        [
            jobstore.StreamAppend(a, [Noted(n=1), Noted(n=2)], jobstore.NO_STREAM),
            jobstore.StreamAppend(b, [Noted(n=3)], jobstore.NO_STREAM),
        ]
    )
    streams = [a, c, b, a, c, a, b, c]
    await pool.fetch(
        "SELECT * FROM jobtrail.append_events($1::text[], $2::integer[], $3::text[],"
        " $4::text[], $5::smallint[], $6::text[]::json[], $7::text[]::json[], true)",
        [a, b, c],
        [2, 1, 0],
        streams,
        ["test.noted"] * len(streams),
        [1] * len(streams),
        [f'{{"n": {i}, "text": "größe ✓ {i}"}}' for i in range(len(streams))],
        ['{"trace": "t"}'] * len(streams),
    )

    assert await store.stream_version(a) == 5
    await assert_chained(pool, 11)


async def test_a_group_commit_with_a_conflict_chains_the_streams_it_writes(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """append_events_each: the stream at the wrong version gets nothing, the others are
    written and chained as if it had not been in the batch."""
    a, b, c = (f"job-{new_job_id()}" for _ in range(3))
    await store.append(a, [Noted(n=0)], jobstore.NO_STREAM)
    await store.append(b, [Noted(n=0), Noted(n=1)], jobstore.NO_STREAM)

    outcomes = await store.append_each(
        [
            jobstore.StreamAppend(a, [Noted(n=1), Noted(n=2)], 1),
            jobstore.StreamAppend(b, [Noted(n=9)], 1),  # b is at version 2
            jobstore.StreamAppend(c, [Noted(n=1), Noted(n=2), Noted(n=3)], jobstore.NO_STREAM),
        ]
    )

    assert isinstance(outcomes[1], jobstore.ConcurrencyError)
    assert [len(o) for o in (outcomes[0], outcomes[2]) if isinstance(o, list)] == [2, 3]
    assert await store.stream_version(b) == 2
    await assert_chained(pool, 1 + 2 + 2 + 3)


async def test_a_stream_continued_after_archiving_chains_to_its_archived_head(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """The appends refuse an archived stream (sql/0035); an event inserted all the same
    (the superuser's direct INSERT) still chains to the head in the archive, and the
    archive's own log.streams_archived record is chained too."""
    job = new_job_id()
    stream = f"job-{job}"
    for event in (dispatched(job), started(), completed()):
        await store.append(stream, [event])
    assert await store.archive_streams([stream], datetime.now(UTC) + timedelta(days=1), 30)
    await pool.execute(
        "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)"
        " VALUES ($1, 4, 'test.noted', 1, '{\"n\": 4}')",
        stream,
    )

    matches = await recompute(pool)

    assert matches[(stream, 4)] is True
    assert len(matches) == 5  # three archived, the continuation, the archive's record
    assert all(matches.values())


@pytest.fixture
async def writer_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool logged in as an application role (may INSERT into the log, nothing more)."""
    name = f"jt_app_{uuid.uuid4().hex[:12]}"
    password = "correct horse battery staple"
    try:
        assert await role.ensure_app_role(db_dsn, name, password) is True
        pool = await jobstore.create_pool(as_user(db_dsn, name, password), max_size=2)
        try:
            assert not await pool.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            )
            yield pool
        finally:
            await pool.close()
    finally:
        await drop_role(db_dsn, name)


async def test_a_writer_cannot_have_a_hash_of_its_own_stored(
    store: jobstore.EventStore, pool: asyncpg.Pool, writer_pool: asyncpg.Pool
) -> None:
    """The application role inserts events bringing hashes (made up, or the right hash of
    other content), under any session setting it likes: the stored hashes are the chain's."""
    stream = f"job-{new_job_id()}"
    await store.append(stream, [Noted(n=0)], jobstore.NO_STREAM)
    async with writer_pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('jobtrail.chain', 'supplied', true)")
        await conn.execute(
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version,"
            " data, hash) VALUES ($1, 2, 'test.noted', 1, '{\"n\": 1}', sha256('made up'))",
            stream,
        )
        await conn.execute(
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version,"
            " data, hash) SELECT $1, 3, 'test.noted', 1, '{\"n\": 2}', e.hash"
            "   FROM jobtrail.events e WHERE e.stream_id = $1 AND e.version = 2",
            stream,
        )

    await assert_chained(pool, 3)


APPEND_EVENTS = (
    "SELECT * FROM jobtrail.append_events($1::text[], $2::integer[], $3::text[], $4::text[],"
    " $5::smallint[], $6::text[]::json[], $7::text[]::json[], true)"
)
APPEND_EVENTS_EACH = (
    "SELECT * FROM jobtrail.append_events_each($1::text[], $2::integer[], $3::text[],"
    " $4::timestamptz[], $5::text[], $6::text[], $7::smallint[], $8::text[]::json[],"
    " $9::text[]::json[])"
)
TRIGGER_CALLS = (
    "SELECT coalesce(pg_stat_get_xact_function_calls('jobtrail.chain_event'::regproc), 0)"
)


def interleaved(streams: list[str]) -> tuple[list[str], list[str], list[int], list[str]]:
    """Stream ids, event types, schema versions and data for one event per entry of
    ``streams`` (non-ASCII text included: the hash takes UTF-8 bytes)."""
    n = len(streams)
    datas = [f'{{"n": {i}, "text": "größe ✓ {i}"}}' for i in range(n)]
    return streams, ["test.noted"] * n, [1] * n, datas


async def test_the_append_functions_hash_every_event_themselves(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """With the row trigger disabled, events appended through append_events and
    append_events_each (many streams, interleaved, new and existing, tokens, a conflict)
    carry Python's hashes: the functions compute the chain set-wise, in input order."""
    a, b, c, d = (f"job-{new_job_id()}" for _ in range(4))
    await store.append(a, [Noted(n=0), Noted(n=1)], jobstore.NO_STREAM)
    await pool.execute("ALTER TABLE jobtrail.events DISABLE TRIGGER events_chain_hash")

    streams, types, versions, datas = interleaved([a, b, c, a, b, a, c, b, a])
    rows = await pool.fetch(
        APPEND_EVENTS, [a, b], [2, 0], streams, types, versions, datas, ['{"t": 1}'] * 9
    )
    assert [r["out_stream_id"] for r in rows] == streams  # positions in input order
    streams, types, versions, datas = interleaved([d, a, c, d, a, b, d])
    rows = await pool.fetch(
        APPEND_EVENTS_EACH,
        [a, b, c, d],
        [6, 0, 2, 0],  # b is at 3: a conflict, nothing written to it
        ["tok-a", None, None, "tok-d"],
        [datetime.now(UTC) + timedelta(days=1)] * 4,
        streams,
        types,
        versions,
        datas,
        ["{}"] * 7,
    )
    written = [r["out_stream_id"] for r in rows if r["out_position"] is not None]
    assert written == [d, a, c, d, a, d]
    assert [r["out_stream_id"] for r in rows if r["out_position"] is None] == [b]

    assert await store.stream_version(a) == 8
    await assert_chained(pool, 8 + 3 + 3 + 3)


async def test_the_row_trigger_runs_for_every_insert_but_the_append_functions(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """The trigger is skipped for the definer functions' rows (their hashes are computed
    already) and runs for a direct insert, and for archiving's record; all are chained."""
    job = new_job_id()
    stream = f"job-{job}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL track_functions = 'pl'")
        streams, types, versions, datas = interleaved([stream, "other", stream])
        await conn.fetch(APPEND_EVENTS, [], [], streams, types, versions, datas, ["{}"] * 3)
        await conn.fetch(
            APPEND_EVENTS_EACH,
            ["other"],
            [1],
            [None],
            [None],
            ["other"],
            *interleaved(["o"])[1:],
            ["{}"],
        )
        assert await conn.fetchval(TRIGGER_CALLS) == 0
        await conn.execute(
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)"
            " VALUES ($1, 3, 'test.noted', 1, '{}')",
            stream,
        )
        assert await conn.fetchval(TRIGGER_CALLS) == 1
    for event in (dispatched(job), started(), completed()):
        await store.append(stream, [event])
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL track_functions = 'pl'")
        archived = await conn.fetch(
            "SELECT * FROM jobtrail.archive_streams($1::text[], $2, 30)",
            [stream],
            datetime.now(UTC) + timedelta(days=1),
        )
        assert len(archived) == 1
        assert await conn.fetchval(TRIGGER_CALLS) == 1  # the log.streams_archived record

    await assert_chained(pool, 6 + 2 + 1)


async def test_the_application_role_appends_through_the_definer_functions(
    store: jobstore.EventStore, pool: asyncpg.Pool, writer_pool: asyncpg.Pool
) -> None:
    """The append functions run as their owner: the application role (which holds EXECUTE,
    not the owner's rights) appends through both, its search_path changes nothing, and its
    events are chained like anyone's."""
    stream = f"job-{new_job_id()}"
    writer = jobstore.EventStore(writer_pool)
    await writer.append(stream, [Noted(n=0), Noted(n=1)], jobstore.NO_STREAM)
    await writer.append_streams([jobstore.StreamAppend(stream, [Noted(n=2)], 2)])
    async with writer_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL search_path = pg_temp, public")
        await conn.fetch(
            "SELECT * FROM jobtrail.append_events_each($1::text[], $2::integer[], $3::text[],"
            " $4::timestamptz[], $5::text[], $6::text[], $7::smallint[], $8::text[]::json[],"
            " $9::text[]::json[])",
            [stream], [3], [None], [None], [stream, stream], ["test.noted"] * 2, [1, 1],
            ['{"n": 3}', '{"n": 4}'], ["{}", "{}"],
        )  # fmt: skip

    assert await store.stream_version(stream) == 5
    await assert_chained(pool, 5)


async def test_the_callers_search_path_cannot_reach_into_the_append_functions(
    store: jobstore.EventStore, pool: asyncpg.Pool, writer_pool: asyncpg.Pool
) -> None:
    """The append functions run as the log's owner: a function the application role puts
    before pg_catalog in its search_path is not what they call (their search_path is
    fixed), so it cannot run with the owner's rights or choose a hashed value."""
    name = await writer_pool.fetchval("SELECT current_user")
    schema = f"{name}_own"
    await pool.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{name}"')
    stream = f"job-{new_job_id()}"
    async with writer_pool.acquire() as conn, conn.transaction():
        await conn.execute(f"""
            CREATE FUNCTION "{schema}".clock_timestamp() RETURNS timestamptz
            LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'hijacked as %', current_user; END; $$;
            SET LOCAL search_path = "{schema}", pg_catalog;
        """)
        with pytest.raises(asyncpg.PostgresError, match="hijacked"):
            async with conn.transaction():
                await conn.fetchval("SELECT clock_timestamp()")  # the trap is armed
        await conn.fetch(APPEND_EVENTS, [stream], [0], *interleaved([stream, stream]), ["{}"] * 2)
        await conn.fetch(
            APPEND_EVENTS_EACH, [stream], [2], [None], [None], *interleaved([stream]), ["{}"]
        )

    assert await store.stream_version(stream) == 3
    await assert_chained(pool, 3)
