"""The whole chain: enqueue → relay → qstash_local → signed delivery → handler → events."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from jobstore import job_events
from tests.host_support import Host, running_host


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn) as running:
        yield running


async def test_success_runs_the_handler_once_and_records_its_result(host: Host) -> None:
    job_id = await host.enqueue(tag="hello")
    execution = await host.wait_status(job_id, "completed")

    assert await host.types(job_id) == ["job.dispatched", "job.started", "job.completed"]
    (call,) = host.handler.calls
    assert (call.job_id, call.dispatch, call.attempt) == (job_id, 1, 1)
    assert call.idempotency_key == f"{job_id}:1"
    assert call.payload.tag == "hello"
    assert execution.result == {"tag": "hello", "attempt": 1}
    assert execution.attempts == 1


async def test_retry_then_success_shows_both_attempts(host: Host) -> None:
    job_id = await host.enqueue(fail_times=1)
    await host.wait_status(job_id, "completed")

    events = await host.events(job_id)
    assert [e.type_name for e in events] == [
        "job.dispatched",
        "job.started",
        "job.attempt_failed",
        "job.started",
        "job.completed",
    ]
    failed = events[2]
    assert isinstance(failed, job_events.JobAttemptFailed)
    assert (failed.attempt, failed.will_retry, failed.error_type) == (1, True, "RuntimeError")
    assert "planned failure on attempt 1" in failed.error_message
    assert failed.traceback is not None
    assert "RuntimeError" in failed.traceback
    assert [c.attempt for c in host.handler.calls] == [1, 2]
    assert {c.idempotency_key for c in host.handler.calls} == {f"{job_id}:1"}


async def test_retries_exhausted_records_every_attempt_and_the_final_failure(host: Host) -> None:
    job_id = await host.enqueue(retries=2, fail_times=99)
    execution = await host.wait_status(job_id, "failed")
    await asyncio.sleep(0.5)  # QStash's failure callback arrives; it must add nothing

    types = await host.types(job_id)
    assert types == ["job.dispatched"] + ["job.started", "job.attempt_failed"] * 3 + ["job.failed"]
    last_attempt = (await host.events(job_id))[-2]
    assert isinstance(last_attempt, job_events.JobAttemptFailed)
    assert (last_attempt.attempt, last_attempt.will_retry) == (3, False)
    assert execution.attempts == 3
    assert "planned failure on attempt 3" in (execution.error or "")
    assert len(host.handler.calls) == 3


async def test_timeout_fails_the_attempt_with_a_timeout_error(host: Host) -> None:
    job_id = await host.enqueue(retries=0, sleep=5)
    await host.wait_status(job_id, "failed")

    failed = [e for e in await host.events(job_id) if isinstance(e, job_events.JobAttemptFailed)]
    assert len(failed) == 1
    assert failed[0].error_type == "TimeoutError"
    assert "within its timeout of 1 s" in failed[0].error_message


@pytest.mark.parametrize("kind", ["nonretryable", "validation"])
async def test_non_retryable_error_fails_the_job_at_once(host: Host, kind: str) -> None:
    job_id = await host.enqueue(retries=3, raise_kind=kind)
    execution = await host.wait_status(job_id, "failed")
    await asyncio.sleep(0.3)

    assert await host.types(job_id) == [
        "job.dispatched",
        "job.started",
        "job.attempt_failed",
        "job.failed",
    ]
    assert len(host.handler.calls) == 1, "489 stopped QStash's retries"
    assert execution.attempts == 1


async def test_duplicate_concurrent_delivery_runs_the_handler_once(host: Host) -> None:
    """QStash delivers at least once: the same envelope, twice, at the same time."""
    job_id = await host.enqueue(block=True)
    await asyncio.wait_for(host.handler.started.wait(), 10)
    body = {"job_id": job_id, "dispatch": 1, "type": "test-job", "payload": {}, "metadata": {}}
    status, answer, headers = await host.post("/jobs/test", body, headers={"Upstash-Retried": "0"})
    assert status == 503
    assert int(headers["Retry-After"]) >= 1
    assert "still running" in answer["error"]

    host.handler.gate.set()
    await host.wait_status(job_id, "completed")
    status, _, _ = await host.post("/jobs/test", body, headers={"Upstash-Retried": "0"})
    assert status == 200, "a delivery for a completed job is acknowledged"
    assert len(host.handler.calls) == 1
    assert (await host.types(job_id)).count("job.started") == 1


async def test_a_scheduled_run_travels_the_whole_chain(db_dsn: str) -> None:
    """schedule() → relay creates the QStash schedule → QStash fires it → a job runs."""
    import time

    from tests.host_support import TEST_CONFIG, relay_caught_up
    from tests.qstash_support import FakeClock

    clock = FakeClock(time.time())
    config = dataclasses.replace(TEST_CONFIG, clock=clock)
    async with running_host(db_dsn, config=config) as host:
        schedule_id = await host.dispatcher.schedule("test-job", "* * * * *", {"tag": "cron"})
        assert host.qstash is not None
        deadline = time.monotonic() + 60  # upper bounds for a loaded machine, not timings
        while schedule_id not in [s.schedule_id for s in await host.ctx.qstash.schedule.list()]:
            assert time.monotonic() < deadline, "the relay did not create the schedule"
            await asyncio.sleep(0.02)
        await relay_caught_up(host, deadline)  # a later sync would re-create the schedule
        clock.now += 61
        deadline = time.monotonic() + 60
        while not host.handler.calls:
            assert time.monotonic() < deadline, "the schedule never fired"
            await asyncio.sleep(0.02)
        (call,) = host.handler.calls
        execution = await host.wait_status(call.job_id, "completed")
        first = (await host.events(call.job_id))[0]

    assert call.payload.tag == "cron"
    assert execution.schedule_id == schedule_id
    assert isinstance(first, job_events.JobDispatched)
    assert first.source == "schedule"
