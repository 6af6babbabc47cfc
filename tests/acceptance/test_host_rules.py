"""Each delivery-path rule of DESIGN.md, with a test that fails if the rule is broken."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from jobstore import job_events
from tests.host_support import (
    TEST_PATH,
    Host,
    dispatched,
    free_port,
    relay_caught_up,
    running_host,
)


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn) as running:
        yield running


def envelope(job_id: str, dispatch: int = 1) -> dict[str, object]:
    return {
        "job_id": job_id,
        "dispatch": dispatch,
        "type": "test-job",
        "payload": {},
        "metadata": {},
    }


async def test_rule1_delivery_of_an_older_dispatch_is_superseded(host: Host) -> None:
    job_id = await host.enqueue(retries=0, fail_dispatches=1)
    await host.wait_status(job_id, "failed")
    await host.dispatcher.replay_job(job_id, "try again")
    await host.wait_status(job_id, "completed")
    calls = len(host.handler.calls)

    status, answer, headers = await host.post(TEST_PATH, envelope(job_id, 1))

    assert status == 489
    assert headers["Upstash-NonRetryable-Error"] == "true"
    assert "superseded" in answer["error"]
    assert len(host.handler.calls) == calls
    assert [c.dispatch for c in host.handler.calls] == [1, 2]


@pytest.fixture
async def quiet_host(db_dsn: str) -> AsyncIterator[Host]:
    """A host whose relay does not publish the hand-written dispatches of a test."""
    async with running_host(db_dsn, relay=False) as running:
        yield running


async def test_rule2_a_cancel_racing_a_start_is_settled_by_the_stream_version(
    quiet_host: Host,
) -> None:
    """Cancel before the delivery starts: the host folds again and runs nothing (no relay,
    so QStash cannot deliver the job before the test's own delivery)."""
    host = quiet_host
    job_id = await host.enqueue(retries=0)
    await host.dispatcher.cancel(job_id, "before it started")
    status, answer, headers = await host.post(TEST_PATH, envelope(job_id))
    assert status == 489
    assert headers["Upstash-NonRetryable-Error"] == "true"
    assert "cancelled" in answer["error"]
    assert all(c.job_id != job_id for c in host.handler.calls)


async def test_rule3_an_attempt_past_its_lease_is_recorded_abandoned(quiet_host: Host) -> None:
    # Without the relay: QStash must not deliver the dispatch before the test does.
    host = quiet_host
    job_id = str(uuid.uuid4())
    store = host.ctx.store
    await store.append(
        f"job-{job_id}",
        [
            job_events.JobDispatched(
                job_id=job_id,
                dispatch=1,
                job_type="test-job",
                payload={},
                options={"endpoint": TEST_PATH, "retries": 3, "timeout": 1.0},
                source="api",
            ),
            job_events.JobStarted(
                dispatch=1, attempt=1, message_id="msg_crashed", lease_until=time.time() - 1
            ),
        ],
        "no_stream",
    )

    status, answer, _ = await host.post(
        TEST_PATH, envelope(job_id), headers={"Upstash-Retried": "1"}
    )

    assert status == 200, answer
    events = await host.events(job_id)
    assert [e.type_name for e in events] == [
        "job.dispatched",
        "job.started",
        "job.attempt_failed",
        "job.started",
        "job.completed",
    ]
    abandoned = events[2]
    assert isinstance(abandoned, job_events.JobAttemptFailed)
    assert (abandoned.attempt, abandoned.abandoned) == (1, True)
    assert events[3].attempt == 2  # type: ignore[attr-defined]


async def test_rule4_cancel_during_a_running_attempt_keeps_its_outcome(host: Host) -> None:
    job_id = await host.enqueue(block=True, tag="late")
    await asyncio.wait_for(host.handler.started.wait(), 10)
    await host.dispatcher.cancel(job_id, "too late")
    host.handler.gate.set()

    execution = await host.wait_status(job_id, "completed")
    assert await host.types(job_id) == [
        "job.dispatched",
        "job.started",
        "job.cancelled",
        "job.completed",
    ]
    assert execution.result == {"tag": "late", "attempt": 1}
    with pytest.raises(Exception, match="completed"):
        await host.dispatcher.replay_job(job_id)


async def _failure_report(job_id: str, dispatch: int = 1) -> dict[str, object]:
    source = orjson.dumps(envelope(job_id, dispatch))
    return {
        "status": 500,
        "retried": 3,
        "maxRetries": 3,
        "sourceMessageId": "msg_x",
        "sourceBody": base64.b64encode(source).decode(),
        "url": "http://x",
    }


async def test_rule5_qstash_verdict_fails_the_dispatch_and_calls_the_users_callback(
    quiet_host: Host,
) -> None:
    host = quiet_host
    received: list[dict[str, object]] = []

    async def user_callback(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/failed", user_callback)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        job_id = str(uuid.uuid4())
        lease = time.time() + 30
        await host.ctx.store.append(
            f"job-{job_id}",
            [
                dispatched(
                    job_id,
                    retries=3,
                    timeout=1.0,
                    failure_callback=f"http://127.0.0.1:{port}/failed",
                ),
                job_events.JobStarted(dispatch=1, attempt=4, lease_until=lease),
            ],
            "no_stream",
        )
        path = "/_jobtrail/qstash/failure"

        status, _, headers = await host.post(path, await _failure_report(job_id))
        assert status == 503, "a live lease is waited out"
        assert int(headers["Retry-After"]) >= 1

        await host.ctx.store.append(
            f"job-{job_id}",
            [
                job_events.JobAttemptFailed(
                    dispatch=1,
                    attempt=4,
                    error_type="RuntimeError",
                    error_message="boom",
                    will_retry=True,
                )
            ],
        )
        status, _, _ = await host.post(path, await _failure_report(job_id))
        assert status == 200
        await host.wait_status(job_id, "failed")
        assert (await host.types(job_id))[-1] == "job.failed"
        deadline = time.monotonic() + 10
        while not received:  # the notifier follows the log and calls through QStash
            assert time.monotonic() < deadline, "the failure callback never came"
            await asyncio.sleep(0.02)
        assert received[0]["job_id"] == job_id

        status, _, _ = await host.post(path, await _failure_report(job_id))
        assert status == 200
        assert (await host.types(job_id)).count("job.failed") == 1, "once only"
    finally:
        await runner.cleanup()


async def test_rule5_failure_callback_for_an_older_dispatch_is_ignored(host: Host) -> None:
    job_id = await host.enqueue(retries=0, fail_dispatches=1)
    await host.wait_status(job_id, "failed")
    await host.dispatcher.replay_job(job_id)
    await host.wait_status(job_id, "completed")
    before = await host.types(job_id)
    status, _, _ = await host.post("/_jobtrail/qstash/failure", await _failure_report(job_id, 1))
    assert status == 200
    assert await host.types(job_id) == before


async def _fired_run(host: Host) -> tuple[str, dict[str, object]]:
    """Create a schedule, let the relay put it in QStash, fire it once; the run's job id."""
    schedule_id = await host.dispatcher.schedule(
        "test-job", "0 0 1 1 *", {"tag": "cron"}, {"organization_id": 4}
    )
    assert host.qstash is not None
    schedules = host.qstash.state.schedules
    deadline = time.monotonic() + 60  # upper bounds for a loaded machine, not timings
    while schedule_id not in schedules:
        assert time.monotonic() < deadline, "the relay did not create the schedule"
        await asyncio.sleep(0.02)
    await relay_caught_up(host, deadline)  # a later sync would replace the schedule
    body = orjson.loads(schedules[schedule_id].body)
    schedules[schedule_id].next_s = 0  # due now: the scheduler fires it on its next tick
    while not host.handler.calls:
        assert time.monotonic() < deadline, "the scheduled run was not delivered"
        await asyncio.sleep(0.02)
    return host.handler.calls[0].job_id, body


async def test_rule7_a_scheduled_run_becomes_a_job_and_its_duplicate_maps_to_it(
    host: Host,
) -> None:
    job_id, body = await _fired_run(host)
    await host.wait_status(job_id, "completed")
    events = await host.events(job_id)
    started = events[1]
    assert isinstance(started, job_events.JobStarted)
    assert started.message_id is not None

    # A duplicate delivery of the same run (same message id) maps to the same job.
    again = await host.post(TEST_PATH, body, headers={"Upstash-Message-Id": started.message_id})

    assert again[0] == 200
    assert len(host.handler.calls) == 1
    dispatched = events[0]
    assert isinstance(dispatched, job_events.JobDispatched)
    assert dispatched.source == "schedule"
    assert dispatched.metadata["schedule_id"] == body["schedule_id"]
    assert await host.types(job_id) == ["job.dispatched", "job.started", "job.completed"]
    execution = await host.dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert execution.schedule_id == body["schedule_id"]


async def test_rule7_a_replayed_run_with_made_up_message_ids_mints_no_job(host: Host) -> None:
    job_id, body = await _fired_run(host)
    await host.wait_status(job_id, "completed")
    before = await host.ctx.store.last_position()

    answers = [
        await host.post(TEST_PATH, body, headers={"Upstash-Message-Id": f"msg_forged_{n}"})
        for n in range(3)
    ]

    assert [status for status, _, _ in answers] == [489, 489, 489]
    assert all(h.get("Upstash-NonRetryable-Error") == "true" for _, _, h in answers)
    assert await host.ctx.store.last_position() == before
    assert len(host.handler.calls) == 1
