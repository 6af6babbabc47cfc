"""Erasure (crypto-shredding) through the whole chain: host, relay, qstash_local, SMTP.

Personal data is given a unique marker; the scans look for it in every table of every
jobtrail schema, every file jobtrail wrote (exports) and its logs, and qstash_local's
messages, logs and DLQ read through the official SDK.  A *plain* scan reads bytes as
stored; an *opened* scan first opens every sealed value with the keys the database still
holds, as an authorised reader would.  Before the erasure the opened scan finds the
marker everywhere it went (so the scan can see it) and the plain scan nowhere; after it,
neither finds it anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from qstash import AsyncQStash

import jobstore
import projections
import qstash_local
from tests.cli_support import jobtrail
from tests.host_support import TEST_CONFIG, Host, free_port, relay_caught_up, running_host
from workers import Sweeper, SweeperConfig

USER_ID = 4242
ORGANIZATION_ID = 77


@dataclass
class Mailbox:
    """An SMTP server's handler: accepts ``ok-`` recipients, refuses others quoting them."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if not address.startswith("ok-"):
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted"


@dataclass
class Smtp:
    mailbox: Mailbox
    port: int


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Smtp(mailbox, port)
    finally:
        controller.stop()


@pytest.fixture
async def callbacks() -> AsyncIterator[tuple[str, list[Any]]]:
    """A receiver of the jobs' failure callbacks: its URL and the bodies it got."""
    bodies: list[Any] = []

    async def receive(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/failed", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/failed", bodies
    finally:
        await runner.cleanup()


@pytest.fixture
async def host(
    db_dsn: str, tmp_path: Path, smtp: Smtp, callbacks: tuple[str, list[Any]]
) -> AsyncIterator[Host]:
    async with running_host(
        db_dsn, export_dir=tmp_path / "exports", smtp_port=smtp.port, smtp_host="127.0.0.1"
    ) as running:
        assert running.qstash is not None and running.settings.qstash_token is not None
        token = running.settings.qstash_token.get_secret_value()
        client = _CLIENTS[id(running)] = AsyncQStash(token, base_url=running.qstash.url)
        _CALLBACK[id(running)] = callbacks[0]
        try:
            yield running
        finally:
            await client.http._client.aclose()
            del _CLIENTS[id(running)], _CALLBACK[id(running)]


@dataclass
class Subject:
    """A user's jobs carrying personal data marked with ``marker``."""

    marker: str
    delivered: str = ""
    refused: str = ""
    export: str = ""

    @property
    def ok_address(self) -> str:
        return f"ok-{self.marker}@example.com"

    @property
    def name(self) -> str:
        return f"Ada {self.marker}"


async def _run_jobs(host: Host, marker: str) -> Subject:
    subject = Subject(marker)
    metadata = {"user_id": USER_ID, "organization_id": ORGANIZATION_ID}
    subject.delivered = await host.dispatcher.send_welcome_email_async(
        {"to": subject.ok_address, "recipient_name": subject.name}, metadata
    )
    subject.refused = await host.dispatcher.enqueue(
        "send-email",
        {
            "template": "password-reset",
            "to": f"refused-{marker}@example.com",
            "data": {
                "recipient_name": subject.name,
                "reset_url": f"https://app.example.com/reset/{marker}",
            },
        },
        metadata,
        {"retries": 0, "failure_callback": _CALLBACK[id(host)]},
    )
    await host.wait_status(subject.delivered, "completed")
    await host.wait_status(subject.refused, "failed")
    await _caught_up(host)
    subject.export = await host.dispatcher.enqueue("export-data", {"user_id": USER_ID})
    await host.wait_status(subject.export, "completed")
    # The refused message's dead letter (QStash's last word) and the notifier's work.
    await _eventually_in_dlq(host)
    await _caught_up(host)
    return subject


async def _run_schedule(host: Host, marker: str) -> tuple[str, str]:
    """A send-email schedule of the user carrying ``marker``, fired once; its id and the
    job its run minted (once completed)."""
    schedule_id = await host.dispatcher.schedule(
        "send-email",
        "0 0 1 1 *",
        {
            "template": "welcome",
            "to": f"ok-s-{marker}@example.com",
            "data": {"recipient_name": f"Ada {marker}"},
        },
        {"user_id": USER_ID},
    )
    deadline = time.monotonic() + 60  # upper bounds for a loaded machine, not timings
    while schedule_id not in [s.schedule_id for s in await _qstash(host).schedule.list()]:
        assert time.monotonic() < deadline, "the relay did not create the schedule"
        await asyncio.sleep(0.02)
    await relay_caught_up(host, deadline)  # a later sync would replace the schedule
    assert host.qstash is not None
    host.qstash.state.schedules[schedule_id].next_s = 0  # due: fired on the next tick
    while True:
        job_id = await host.ctx.store.pool.fetchval(
            "SELECT job_id::text FROM jobtrail.job_executions WHERE schedule_id = $1",
            schedule_id,
        )
        if job_id is not None:
            break
        assert time.monotonic() < deadline, "the scheduled run minted no job"
        await asyncio.sleep(0.02)
    await host.wait_status(job_id, "completed", within=60)
    await _caught_up(host)
    return schedule_id, job_id


async def _caught_up(host: Host) -> None:
    await projections.wait_for_position(
        host.ctx.store.pool, await host.ctx.store.last_position(), timeout=10
    )


async def _eventually_in_dlq(host: Host) -> None:
    for _ in range(500):
        if (await _qstash(host).dlq.list()).messages:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the refused email's message never reached qstash_local's DLQ")


_CLIENTS: dict[int, AsyncQStash] = {}
_CALLBACK: dict[int, str] = {}


def _qstash(host: Host) -> AsyncQStash:
    """The official SDK's client of the host's qstash_local (closed by the host fixture)."""
    return _CLIENTS[id(host)]


# -- the scans ----------------------------------------------------------------------------


async def _tables(pool: asyncpg.Pool) -> dict[str, list[Any]]:
    """Every row of every table in every jobtrail schema, as JSON values."""
    async with pool.acquire() as conn:
        names = await conn.fetch(
            "SELECT format('%I.%I', n.nspname, c.relname) AS name"
            "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname LIKE 'jobtrail%'"
        )
        assert len(names) > 10, "the scan must see jobtrail's tables"
        return {
            row["name"]: [
                r[0] for r in await conn.fetch(f"SELECT to_jsonb(t) FROM {row['name']} t")
            ]
            for row in names
        }


def _files(root: Path) -> dict[str, list[Any]]:
    """Every file under ``root``: JSON Lines as values, anything else as text."""
    found: dict[str, list[Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        lines = path.read_bytes().splitlines()
        found[str(path.relative_to(root))] = [_json_or_text(line.decode()) for line in lines]
    assert found, f"jobtrail wrote no file under {root}"
    return found


async def _qstash_state(host: Host) -> dict[str, list[Any]]:
    """qstash_local's messages, logs, DLQ and schedules, through the official SDK."""
    client = _qstash(host)
    logs: list[Any] = []
    cursor = None
    while True:
        page = await client.log.list(count=1000, cursor=cursor)
        logs += page.logs
        cursor = page.cursor
        if not cursor:
            break
    messages = []
    for message_id in sorted({entry.message_id for entry in logs}):
        try:
            messages.append(await client.message.get(message_id))
        except Exception:  # delivered messages are gone from QStash: their logs remain
            continue
    dlq = (await client.dlq.list()).messages
    schedules = await client.schedule.list()
    assert logs and dlq
    return {
        "logs": _plain(logs),
        "messages": _plain(messages),
        "dlq": _plain(dlq),
        "schedules": _plain(schedules),
    }


def _plain(items: list[Any]) -> list[Any]:
    """SDK objects as JSON values, with base64 bodies decoded and JSON bodies parsed."""
    return [_decoded(dataclasses.asdict(item)) for item in items]


def _decoded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    if isinstance(value, str):
        parsed = _json_or_text(value)
        if parsed is not value:
            return _decoded(parsed)
        try:
            raw = base64.b64decode(value, validate=True)
            return [value, _decoded(_json_or_text(raw.decode()))]
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return value
    return value


def _json_or_text(text: str) -> Any:
    if text[:1] in ("{", "["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return text


async def _scan(host: Host, tmp_path: Path, logs: str) -> dict[str, Any]:
    return {
        "tables": await _tables(host.ctx.store.pool),
        "files": _files(tmp_path / "exports"),
        "qstash": await _qstash_state(host),
        "logs": logs,
    }


def _where(value: Any, marker: str, path: str = "") -> list[str]:
    """The places in ``value`` whose text holds ``marker``."""
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in _where(v, marker, f"{path}/{k}")]
    if isinstance(value, list):
        return [w for i, v in enumerate(value) for w in _where(v, marker, f"{path}[{i}]")]
    return [path] if marker in orjson.dumps(value).decode() else []


def _at(value: Any, where: str) -> str:
    """The text at ``where`` (a path given by :func:`_where`), for a failure's message."""
    for part in where.strip("/").split("/"):
        name, *indexes = part.replace("]", "").split("[")
        value = value[name] if isinstance(value, dict) else value
        for index in indexes:
            value = value[int(index)]
    return orjson.dumps(value).decode()[:300]


def _surfaces(places: list[str]) -> set[str]:
    """The surfaces of these places: ``/tables/<table>``, ``/qstash/<part>``, ``/files``."""
    shown = set()
    for place in places:
        parts = place.split("[")[0].split("/")
        shown.add("/" + "/".join(parts[1:2] if parts[1] in ("files", "logs") else parts[1:3]))
    return shown


# -- the tests ----------------------------------------------------------------------------


async def test_handlers_and_callbacks_receive_the_personal_data_in_plaintext(
    host: Host, smtp: Smtp, callbacks: tuple[str, list[Any]]
) -> None:
    subject = await _run_jobs(host, uuid.uuid4().hex)

    (message,) = smtp.mailbox.messages
    assert message["To"] == subject.ok_address
    assert subject.name in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    execution = await host.dispatcher.get_job_execution_by_job_id(subject.delivered)
    assert execution is not None and execution.payload["to"] == subject.ok_address
    for _ in range(500):  # the notifier follows the log; QStash then delivers its message
        if callbacks[1]:
            break
        await asyncio.sleep(0.02)
    (called,) = callbacks[1]
    assert called["job_id"] == subject.refused
    assert f"refused-{subject.marker}@example.com" in called["error_message"]


async def test_personal_data_is_never_stored_in_plaintext(
    host: Host, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = uuid.uuid4().hex
    await _run_jobs(host, marker)
    await _run_schedule(host, marker)

    stored = await _scan(host, tmp_path, "".join(capfd.readouterr()))
    opened = await host.ctx.store.keys.reveal(stored)

    leaks = _where(stored, marker)
    assert leaks == [], [(w, _at(stored, w)[:80]) for w in leaks][:20]
    # The control: opened with the keys, the marker is there on every surface it went to.
    reached = _surfaces(_where(opened, marker))
    assert {
        "/tables/jobtrail.events",
        "/tables/jobtrail.job_executions",
        "/qstash/logs",
        "/qstash/dlq",
        "/qstash/schedules",
        "/files",
    } <= reached, reached


async def test_after_an_erasure_no_byte_of_the_personal_data_is_readable_anywhere(
    host: Host, tmp_path: Path, db_dsn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    marker = uuid.uuid4().hex
    subject = await _run_jobs(host, marker)
    schedule_id, run = await _run_schedule(host, marker)
    other = await _run_other_users_job(host)
    finished = datetime.now(UTC) + timedelta(hours=1)
    archived = await host.ctx.store.archive_streams([f"job-{subject.refused}"], finished, 0)
    assert archived == [f"job-{subject.refused}"]
    before = await host.ctx.store.keys.reveal(await _scan(host, tmp_path, ""))
    assert "/tables/jobtrail.events_archive" in _surfaces(_where(before, marker))

    erased = await jobtrail(db_dsn, "erase", "--user-id", str(USER_ID), "--json")
    assert erased.code == 0, erased.err
    outcome = orjson.loads(erased.out)
    # The export job belongs to nobody (no user in its metadata): its key stays.
    assert sorted(outcome["job_ids"]) == sorted([subject.delivered, subject.refused, run])
    assert outcome["schedule_ids"] == [schedule_id]  # its key destroyed, the schedule deleted
    await relay_caught_up(host, time.monotonic() + 60)  # the relay deletes it from QStash
    assert schedule_id not in [s.schedule_id for s in await _qstash(host).schedule.list()]

    after = await _scan(host, tmp_path, "".join(capfd.readouterr()))
    assert _where(after, marker) == []
    assert _where(await host.ctx.store.keys.reveal(after), marker) == []
    # Every event stays, the erasure is recorded, readers see "[erased]", others are intact.
    execution = await host.dispatcher.get_job_execution_by_job_id(subject.delivered)
    assert execution is not None
    assert execution.payload["to"] == jobstore.protect.ERASED
    assert execution.payload["template"] == "welcome"
    types = [e.type_name for e in await host.ctx.store.read_stream(f"job-{subject.delivered}")]
    assert types == ["job.dispatched", "job.started", "job.completed"]
    recorded = [
        e for e in await host.ctx.store.read_all(0, 10_000) if e.type_name == "subject.erased"
    ]
    assert [(r.event.subject, r.event.subject_id) for r in recorded] == [("user", str(USER_ID))]
    kept = await host.dispatcher.get_job_execution_by_job_id(other)
    assert kept is not None and kept.payload["to"] == "ok-someone-else@example.com"
    # The log is unchanged: its hash chain (over the stored ciphertext) still verifies.
    verified = await jobtrail(db_dsn, "audit", "verify", "--json")
    assert verified.code == 0 and orjson.loads(verified.out)["intact"] is True, verified.out


async def _run_other_users_job(host: Host) -> str:
    job_id = await host.dispatcher.send_welcome_email_async(
        {"to": "ok-someone-else@example.com", "recipient_name": "Grace"}, {"user_id": 1}
    )
    await host.wait_status(job_id, "completed")
    return job_id


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--user-id", "abc"], "user id 'abc' is not a whole number >= 1"),
        (["--job-id", "42"], "job id '42' is not a UUID"),
        ([], "give exactly one of --job-id, --user-id or --organization-id"),
        (["--user-id", "1", "--organization-id", "2"], "give exactly one"),
    ],
)
async def test_erase_from_the_cli_refuses_bad_input_in_one_line(
    db_dsn: str, args: list[str], problem: str
) -> None:
    result = await jobtrail(db_dsn, "erase", *args)

    assert result.code == 2 and problem in result.err and "Traceback" not in result.err


async def test_erasing_a_subject_with_nothing_left_says_so_and_records_nothing(db_dsn: str) -> None:
    result = await jobtrail(db_dsn, "erase", "--organization-id", "9")

    assert result.code == 0 and "nothing to erase" in result.out
    conn = await asyncpg.connect(db_dsn)
    try:
        recorded = await conn.fetchval(
            "SELECT count(*) FROM jobtrail.events WHERE event_type = 'subject.erased'"
        )
    finally:
        await conn.close()
    assert recorded == 0


async def test_a_lost_message_of_an_erased_job_fails_instead_of_being_recovered(
    db_dsn: str,
) -> None:
    """The sweeper cannot recover it (a recovery would run without its data): it fails it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with running_host(db_dsn, qstash_url=url) as host:
        sweeper = Sweeper(host.ctx, SweeperConfig(min_age=0))
        async with qstash_local.serve(TEST_CONFIG, host="127.0.0.1", port=port):
            host.ctx.accepting = False  # QStash keeps the message, retrying after a 503
            job_id = await host.dispatcher.send_welcome_email_async(
                {"to": "lost@example.com", "recipient_name": "Lost"}, {"user_id": 88}
            )
            for _ in range(250):
                if await host.ctx.store.pool.fetchval(
                    "SELECT message_id FROM jobtrail.relay_messages WHERE job_id = $1", job_id
                ):
                    break
                await asyncio.sleep(0.02)
            await jobstore.erasure.erase(host.ctx.store, "user", 88)

        # qstash_local restarts empty: the message is gone, and so is the job's data.
        async with qstash_local.serve(TEST_CONFIG, host="127.0.0.1", port=port):
            assert await sweeper.sweep_once() == 1
            assert await sweeper.sweep_once() == 0

        types = await host.types(job_id)
        assert types == ["job.dispatched", "job.failed"]


async def test_the_host_reads_the_key_of_a_job_without_one_once_per_delivery(db_dsn: str) -> None:
    """Its delivery found no key, reading it with the job's stream (one statement): the
    outcome is sealed (with nothing) without a second read.  A job with a key still has its
    outcome sealed: the scans above prove it (the refused email's error quotes the address)."""
    reads: list[tuple[Any, ...]] = []
    async with running_host(db_dsn) as host:
        store = host.ctx.store
        keys, fetch, fetch_stream = store.keys, store.keys._fetch, store._fetch

        async def counted(connection: Any, sql: str, *args: Any) -> Any:
            if "FROM jobtrail.data_keys" in sql and "INSERT" not in sql:
                reads.append(args)
            return await fetch(connection, sql, *args)

        async def counted_stream(sql: str, *args: Any) -> Any:
            if "jobtrail.data_keys" in sql:
                reads.append(args)
            return await fetch_stream(sql, *args)

        keys._fetch = counted  # type: ignore[method-assign,unused-ignore]
        store._fetch = counted_stream  # type: ignore[method-assign,unused-ignore]
        job_id = await host.enqueue(fail_times=1)
        await host.wait_status(job_id, "completed")
        types = await host.types(job_id)

    assert types == [
        "job.dispatched",
        "job.started",
        "job.attempt_failed",
        "job.started",
        "job.completed",
    ]
    stream = f"job-{job_id}"
    assert reads == [(stream, job_id), (stream, job_id)]  # with each delivery's stream read
