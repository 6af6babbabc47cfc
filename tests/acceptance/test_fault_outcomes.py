"""Two outcomes for one dispatch cannot happen: an outcome that arrives after its attempt
was closed (by another host, QStash's verdict or the job's end) is a late report only.

Two hosts share one database; host A runs the attempt and stalls after its handler
returned (its outcome append is held, as a paused process or a blocked event loop would
hold it) past the attempt's lease, host B closes the attempt, then A resumes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

import projections
from jobstore import Event, job_events
from tests.host_support import TEST_PATH, Host, running_host

FAILURE_PATH = "/_jobtrail/qstash/failure"
OUTCOMES = (job_events.JobCompleted, job_events.JobAttemptFailed)


class Stall:
    """Holds host A's first outcome append until released (A 'stalls' there)."""

    def __init__(self, host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        store = host.ctx.store
        real = store.append

        async def append(stream_id: str, events: list[Event], *args: Any, **kw: Any) -> Any:
            first = not self.reached.is_set()
            if first and any(isinstance(e, OUTCOMES) for e in events):
                self.reached.set()  # only this append waits: the sweeper's must not
                await self.release.wait()
            return await real(stream_id, events, *args, **kw)

        monkeypatch.setattr(store, "append", append)


@contextlib.asynccontextmanager
async def two_hosts(db_dsn: str) -> AsyncIterator[tuple[Host, Host]]:
    """Host A (relay on, with qstash_local) and host B on the same database and QStash."""
    async with running_host(db_dsn) as a:
        assert a.qstash is not None
        async with running_host(db_dsn, relay=False, qstash_url=a.qstash.url) as b:
            yield a, b


async def _started(host: Host, job_id: str) -> job_events.JobStarted:
    deadline = time.monotonic() + 15
    while True:
        started = [e for e in await host.events(job_id) if isinstance(e, job_events.JobStarted)]
        if started:
            return started[0]
        assert time.monotonic() < deadline, "the job never started"
        await asyncio.sleep(0.02)


async def _past_lease(started: job_events.JobStarted) -> None:
    """Wait until the attempt's lease has ended (the stall outlasts it)."""
    await asyncio.sleep(max(0.0, started.lease_until - time.time()) + 0.05)


async def _until_late(host: Host, job_id: str) -> list[Event]:
    deadline = time.monotonic() + 15
    while True:
        events = await host.events(job_id)
        if any(isinstance(e, job_events.JobOutcomeLate) for e in events):
            return events
        assert time.monotonic() < deadline, f"no late report: {await host.types(job_id)}"
        await asyncio.sleep(0.02)


async def _view_status(host: Host, job_id: str) -> str:
    pool = host.ctx.store.pool
    await projections.wait_for_position(pool, await host.ctx.store.last_position(), timeout=15)
    status = await pool.fetchval(
        "SELECT status FROM jobtrail.job_executions WHERE job_id = $1", job_id
    )
    return str(status)


def _failure_report(job_id: str, dispatch: int = 1) -> dict[str, object]:
    source = {"job_id": job_id, "dispatch": dispatch, "type": "test-job", "payload": {}}
    return {
        "status": 500,
        "retried": 0,
        "maxRetries": 0,
        "sourceMessageId": "msg_x",
        "sourceBody": base64.b64encode(orjson.dumps(source)).decode(),
        "url": "http://x",
    }


async def test_completion_after_qstash_failed_the_job_is_a_late_report(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with two_hosts(db_dsn) as (a, b):
        stall = Stall(a, monkeypatch)
        job_id = await a.enqueue(retries=0, tag="slow")
        started = await _started(a, job_id)
        await asyncio.wait_for(stall.reached.wait(), 15)  # A's handler returned; A stalls
        await _past_lease(started)

        status, answer, _ = await b.post(FAILURE_PATH, _failure_report(job_id))
        assert status == 200, answer
        stall.release.set()  # A resumes and reports its completion
        events = await _until_late(a, job_id)

        assert [e.type_name for e in events] == [
            "job.dispatched",
            "job.started",
            "job.attempt_failed",
            "job.failed",
            "job.outcome_late",
        ]
        late = events[-1]
        assert isinstance(late, job_events.JobOutcomeLate)
        assert (late.dispatch, late.attempt, late.reported) == (1, 1, "completed")
        assert late.result is not None  # the handler's result (sealed with the job's key)
        assert late.duration_seconds is not None
        assert "already failed" in late.closed
        execution = await a.dispatcher.get_job_execution_by_job_id(job_id)
        assert execution is not None and execution.status == "failed"
        assert await _view_status(b, job_id) == "failed"
        assert [c.attempt for c in a.handler.calls] == [1]
        assert b.handler.calls == []
        stream = f"job-{job_id}"
        later = datetime.now(UTC) + timedelta(seconds=1)
        assert await a.ctx.store.archive_streams([stream], later, 0) == [stream], (
            "a late report changes no status: the failed job is archivable"
        )


async def test_failure_after_another_host_ran_the_next_attempt_is_a_late_report(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with two_hosts(db_dsn) as (a, b):
        stall = Stall(a, monkeypatch)
        job_id = await a.enqueue(retries=2, fail_times=1, tag="twice")
        started = await _started(a, job_id)
        await asyncio.wait_for(stall.reached.wait(), 15)  # A's attempt 1 failed; A stalls
        await _past_lease(started)

        # QStash's next delivery reaches host B: attempt 1 is abandoned, attempt 2 runs.
        body = {"job_id": job_id, "dispatch": 1, "type": "test-job", "payload": {}}
        status, answer, _ = await b.post(TEST_PATH, body)
        assert status == 200, answer
        stall.release.set()
        events = await _until_late(a, job_id)

        assert [e.type_name for e in events] == [
            "job.dispatched",
            "job.started",
            "job.attempt_failed",
            "job.started",
            "job.completed",
            "job.outcome_late",
        ]
        late = events[-1]
        assert isinstance(late, job_events.JobOutcomeLate)
        assert (late.attempt, late.reported, late.error_type) == (1, "failed", "RuntimeError")
        assert "attempt 2 followed" in late.closed
        assert await _view_status(a, job_id) == "completed"
        assert [c.attempt for c in a.handler.calls] == [1]
        assert [c.attempt for c in b.handler.calls] == [2]
