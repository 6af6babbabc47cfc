"""Long jobs heartbeat: an attempt that says it is alive keeps its lease past the first
one (the sweeper and a second delivery leave it alone, heartbeats are coalesced in the
log); one that stops loses its attempt when the lease ends."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from jobstore import (
    DispatchOptions,
    EventStore,
    JobConfig,
    JobError,
    JobRegistry,
    change,
    job_events,
    protect,
)
from jobstore.job import EnqueueJobOptions
from tests.acceptance.test_fault_outcomes import Stall
from tests.cli_support import jobtrail
from tests.host_support import TEST_PATH, Host, TestPayload, running_host
from workers import Sweeper, SweeperConfig

HEARTBEAT = 1.0  # seconds: the lease is two of them (+ the test host's 0.5 s grace)


async def _long_job(host: Host, **payload: object) -> str:
    """A test-job that heartbeats (timeout 60 s), 'published' as a message QStash does not
    know, so the sweeper would recover it as soon as its lease ended."""
    job_id = str(uuid.uuid4())
    await host.ctx.store.append(
        f"job-{job_id}",
        [
            job_events.JobDispatched(
                job_id=job_id,
                dispatch=1,
                job_type="test-job",
                payload=payload,
                options={
                    "endpoint": TEST_PATH,
                    "retries": 2,
                    "timeout": 60.0,
                    "heartbeat": HEARTBEAT,
                },
            )
        ],
        "no_stream",
    )
    await host.ctx.store.pool.execute(
        "INSERT INTO jobtrail.relay_messages (job_id, dispatch, message_id) VALUES ($1, 1, $2)",
        job_id,
        f"msg_lost_{job_id}",
    )
    return job_id


def _delivery(job_id: str) -> dict[str, object]:
    return {"job_id": job_id, "dispatch": 1, "type": "test-job", "payload": {}}


async def _first_lease(host: Host, job_id: str) -> float:
    """Wait until the attempt has started and its first lease has ended; that lease's end."""
    deadline = time.monotonic() + 15
    while True:
        started = [e for e in await host.events(job_id) if isinstance(e, job_events.JobStarted)]
        if started:
            break
        assert time.monotonic() < deadline, "the attempt never started"
        await asyncio.sleep(0.02)
    lease = started[0].lease_until
    await asyncio.sleep(max(0.0, lease - time.time()) + 0.2)
    return lease


async def test_a_heartbeating_attempt_outlives_its_first_lease_and_runs_once(
    db_dsn: str,
) -> None:
    async with running_host(db_dsn, relay=False) as host:
        job_id = await _long_job(host, beats=25, beat_every=0.25, tag="long")
        running = asyncio.create_task(host.post(TEST_PATH, _delivery(job_id)))

        first_lease = await _first_lease(host, job_id)
        state = await change.load(host.ctx.store, job_id)
        assert state is not None and state.lease_until is not None
        assert state.lease_until > time.time() > first_lease, "heartbeats extended the lease"
        assert await Sweeper(host.ctx, SweeperConfig(min_age=0)).sweep_once() == 0
        status, answer, headers = await host.post(TEST_PATH, _delivery(job_id))
        assert status == 503, answer
        assert "still running" in answer["error"]
        assert int(headers["Retry-After"]) >= 1

        status, answer, _ = await running
        assert status == 200, answer
        types = await host.types(job_id)
        assert [t for t in types if t != "job.heartbeat"] == [
            "job.dispatched",
            "job.started",
            "job.completed",
        ]
        recorded = types.count("job.heartbeat")
        assert 2 <= recorded <= len(host.handler.heartbeats) // 3, "coalesced per half lease"
        assert all(host.handler.heartbeats)
        assert len(host.handler.calls) == 1
        assert await Sweeper(host.ctx, SweeperConfig(min_age=0)).sweep_once() == 0


async def test_an_attempt_that_stops_heartbeating_is_abandoned_when_its_lease_ends(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host stalls after one heartbeat (its outcome append is held): when the lease
    ends, the sweeper records the attempt abandoned and recovers the job."""
    async with running_host(db_dsn, relay=False) as host:
        stall = Stall(host, monkeypatch)
        job_id = await _long_job(host, beats=1, beat_every=0.1, block=True)
        running = asyncio.create_task(host.post(TEST_PATH, _delivery(job_id)))
        await asyncio.wait_for(stall.reached.wait(), 15)  # its own timer stopped the handler
        await _first_lease(host, job_id)
        state = await change.load(host.ctx.store, job_id)
        assert state is not None and state.lease_until is not None
        await asyncio.sleep(max(0.0, state.lease_until - time.time()) + 0.1)

        assert await Sweeper(host.ctx, SweeperConfig(min_age=0)).sweep_once() == 1
        stall.release.set()
        status, answer, _ = await running

        events = await host.events(job_id)
        abandoned = next(e for e in events if isinstance(e, job_events.JobAttemptFailed))
        assert (abandoned.attempt, abandoned.abandoned) == (1, True)
        recovery = events[events.index(abandoned) + 1]
        assert isinstance(recovery, job_events.JobDispatched)
        assert recovery.source == "recovery"
        late = events[-1]
        assert isinstance(late, job_events.JobOutcomeLate), [e.type_name for e in events]
        keys = await host.ctx.store.keys.keys([job_id])
        assert "no heartbeat" in protect.reveal(late.error_message, keys)
        assert status == 200, answer


async def test_a_handler_that_stops_heartbeating_is_stopped_by_its_host(db_dsn: str) -> None:
    async with running_host(db_dsn, relay=False) as host:
        job_id = await _long_job(host, beats=1, beat_every=0.1, block=True)

        status, answer, _ = await host.post(TEST_PATH, _delivery(job_id))

        assert status == 500, answer
        failed = [
            e for e in await host.events(job_id) if isinstance(e, job_events.JobAttemptFailed)
        ]
        assert len(failed) == 1 and failed[0].will_retry
        assert failed[0].error_type == "TimeoutError"
        keys = await host.ctx.store.keys.keys([job_id])
        message = protect.reveal(failed[0].error_message, keys)
        assert "no heartbeat within its lease of 2 s" in message
        assert failed[0].duration_seconds is not None and failed[0].duration_seconds < 60


def test_a_type_declares_a_heartbeat_instead_of_a_long_lease() -> None:
    config = JobConfig(type="export", endpoint="/x", retries=1, timeout="1h", heartbeat="30s")
    options = DispatchOptions.for_job(config)

    assert options.heartbeat == 30
    assert options.lease_seconds == 60, "two heartbeats, not the hour"
    assert options.qstash_timeout > 3600, "QStash waits for the whole run"
    assert DispatchOptions(timeout=10).lease_seconds == 10
    with pytest.raises(ValueError, match="heartbeat of 0 s"):
        EnqueueJobOptions(heartbeat=0)


def test_a_type_with_a_heartbeat_needs_an_async_handler() -> None:
    config = JobConfig(type="export", endpoint="/x", retries=1, timeout="1h", heartbeat="30s")
    registry = JobRegistry()

    with pytest.raises(JobError, match="must be async"):
        registry.register(config, TestPayload, lambda payload, job: None)

    async def handler(payload: TestPayload, job: object) -> None:
        return None

    assert registry.register(config, TestPayload, handler).handler is handler


async def test_enqueue_takes_a_heartbeat_from_the_cli(db_dsn: str, store: EventStore) -> None:
    result = await jobtrail(
        db_dsn,
        "enqueue",
        "cleanup-old-data",
        "--payload",
        '{"retention": 30}',
        "--heartbeat",
        "20s",
        "--json",
    )

    assert result.code == 0, result.err
    job_id = json.loads(result.out)["job_id"]
    (event,) = [r.event for r in await store.read_stream(f"job-{job_id}")]
    assert isinstance(event, job_events.JobDispatched)
    assert event.options.heartbeat == 20
