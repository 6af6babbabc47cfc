"""A recurring schedule's personal data through the whole chain: sealed with the schedule's
key in the log and in QStash's schedule and messages (read through the official SDK), opened
by the host before it mints the run's job (which seals it with its own key), and a run still
under way when its schedule's key is erased mints nothing and is not retried."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from qstash import AsyncQStash

from jobstore import erasure, job_events, keyring, protect
from tests.cli_support import jobtrail
from tests.host_support import Host, free_port, relay_caught_up, running_host

WITHIN = 60.0  # upper bounds for a loaded machine, not timings


@dataclass
class Inbox:
    """An SMTP server's handler that accepts every message."""

    recipients: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients += envelope.rcpt_tos
        return "250 Message accepted"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
async def host(db_dsn: str, inbox: tuple[Inbox, int]) -> AsyncIterator[Host]:
    async with running_host(db_dsn, smtp_port=inbox[1], smtp_host="127.0.0.1") as running:
        yield running


@pytest.fixture
async def sdk(host: Host) -> AsyncIterator[AsyncQStash]:
    """The official SDK's client of the host's qstash_local."""
    assert host.qstash is not None and host.settings.qstash_token is not None
    client = AsyncQStash(host.settings.qstash_token.get_secret_value(), base_url=host.qstash.url)
    try:
        yield client
    finally:
        await client.http._client.aclose()


async def _scheduled(host: Host, sdk: AsyncQStash, address: str, user_id: int) -> str:
    """A send-email schedule to ``address``, once the relay has put it in QStash."""
    schedule_id = await host.dispatcher.schedule(
        "send-email",
        "0 0 1 1 *",
        {"template": "welcome", "to": address, "data": {"recipient_name": "Ada"}},
        {"user_id": user_id},
    )
    deadline = time.monotonic() + WITHIN
    while schedule_id not in [s.schedule_id for s in await sdk.schedule.list()]:
        assert time.monotonic() < deadline, "the relay did not create the schedule"
        await asyncio.sleep(0.02)
    await relay_caught_up(host, deadline)  # a later sync would replace the schedule
    return schedule_id


def _fire(host: Host, schedule_id: str) -> None:
    assert host.qstash is not None
    host.qstash.state.schedules[schedule_id].next_s = 0  # due: fired on the next tick


async def _minted(host: Host, schedule_id: str) -> str:
    deadline = time.monotonic() + WITHIN
    while True:
        job_id = await host.ctx.store.pool.fetchval(
            "SELECT job_id::text FROM jobtrail.job_executions WHERE schedule_id = $1",
            schedule_id,
        )
        if job_id is not None:
            return str(job_id)
        assert time.monotonic() < deadline, "the scheduled run minted no job"
        await asyncio.sleep(0.02)


async def _logs(sdk: AsyncQStash, schedule_id: str) -> list[Any]:
    page = await sdk.log.list(count=1000, filter={"schedule_id": schedule_id})
    return list(page.logs)


async def test_a_scheduled_runs_personal_data_travels_sealed_and_the_handler_gets_it(
    host: Host, sdk: AsyncQStash, inbox: tuple[Inbox, int], db_dsn: str
) -> None:
    address = f"ok-{uuid.uuid4().hex}@example.com"
    schedule_id = await _scheduled(host, sdk, address, user_id=71)
    remote = await sdk.schedule.get(schedule_id)
    assert remote.body is not None and address not in remote.body
    body = orjson.loads(remote.body)
    assert protect.kids_in(body["payload"]) == {keyring.schedule_key_id(schedule_id)}

    _fire(host, schedule_id)
    job_id = await _minted(host, schedule_id)
    await host.wait_status(job_id, "completed", within=WITHIN)

    assert inbox[0].recipients == [address]  # the handler got it opened
    dispatched = (await host.events(job_id))[0]
    assert isinstance(dispatched, job_events.JobDispatched)
    assert dispatched.source == "schedule"
    assert protect.kids_in(dispatched.payload) == {job_id}  # re-sealed with the job's own key
    delivered = await _logs(sdk, schedule_id)
    assert delivered and all(address not in orjson.dumps(e.__dict__).decode() for e in delivered)

    # Erasing the run's job alone leaves the schedule's data readable, and the reverse.
    erased = await jobtrail(db_dsn, "erase", "--job-id", job_id, "--json")
    assert erased.code == 0 and orjson.loads(erased.out)["schedule_ids"] == [], erased.err
    execution = await host.dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None and execution.payload["to"] == protect.ERASED
    listed = await jobtrail(db_dsn, "schedule", "list", "--json")
    (shown,) = orjson.loads(listed.out)["schedules"]
    assert shown["payload"]["to"] == address


async def test_a_run_under_way_when_its_schedule_is_erased_mints_no_job_and_stops(
    host: Host, sdk: AsyncQStash, db_dsn: str, capfd: pytest.CaptureFixture[str]
) -> None:
    address = f"ok-{uuid.uuid4().hex}@example.com"
    schedule_id = await _scheduled(host, sdk, address, user_id=72)
    host.ctx.accepting = False  # the run's first delivery gets "try later" (Retry-After 5 s)
    _fire(host, schedule_id)
    deadline = time.monotonic() + WITHIN
    while not await _logs(sdk, schedule_id):
        assert time.monotonic() < deadline, "the schedule never fired"
        await asyncio.sleep(0.02)

    done = await erasure.erase(host.ctx.store, "user", 72)
    host.ctx.accepting = True
    assert done.schedule_ids == [schedule_id]
    deadline = time.monotonic() + WITHIN
    while not (await sdk.dlq.list(filter={"schedule_id": schedule_id})).messages:
        assert time.monotonic() < deadline, "the refused run did not end in the DLQ"
        await asyncio.sleep(0.05)

    assert (
        await host.ctx.store.pool.fetchval(
            "SELECT count(*) FROM jobtrail.events WHERE event_type = 'job.dispatched'"
        )
        == 0
    )
    (dead,) = (await sdk.dlq.list(filter={"schedule_id": schedule_id})).messages
    assert dead.response_status == 489
    states = [e.state.value for e in await _logs(sdk, schedule_id)]
    assert states.count("DELIVERED") == 0, states
    await relay_caught_up(host, time.monotonic() + WITHIN)
    assert schedule_id not in [s.schedule_id for s in await sdk.schedule.list()]
    listed = await jobtrail(db_dsn, "schedule", "list", "--all", "--json")
    (shown,) = orjson.loads(listed.out)["schedules"]
    assert shown["deleted"] and shown["payload"]["to"] == protect.ERASED
    logs = "".join(capfd.readouterr())
    assert "personal data was erased" in logs and "Traceback" not in logs
    assert address not in logs
