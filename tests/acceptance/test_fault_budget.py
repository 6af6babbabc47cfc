"""The host owns the retry budget: handler attempts are counted from the job's own history,
the host fails the job itself (489) when they are spent, and QStash's headroom beyond the
budget absorbs the host's own "try later" answers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

from jobstore import job_events
from jobstore.options import QSTASH_RETRY_HEADROOM
from qstash_local import event_log
from tests.host_support import TEST_PATH, Host, dispatched, running_host


async def _message_of(host: Host, job_id: str) -> str:
    deadline = time.monotonic() + 15
    while True:
        message_id = await host.ctx.store.pool.fetchval(
            "SELECT message_id FROM jobtrail.relay_messages WHERE job_id = $1", job_id
        )
        if message_id:
            return str(message_id)
        assert time.monotonic() < deadline, "the relay never published the job"
        await asyncio.sleep(0.02)


def _rows(host: Host, message_id: str) -> Iterator[event_log.Event]:
    assert host.qstash is not None
    return (e for e in host.qstash.state.events.oldest_first() if e.message.id == message_id)


def _answers(host: Host, message_id: str) -> list[int | None]:
    """The status of each delivery QStash made of the message, in order."""
    return [e.response_status for e in _rows(host, message_id) if e.state in ("ERROR", "DELIVERED")]


async def _until(host: Host, message_id: str, final: str) -> list[str]:
    deadline = time.monotonic() + 30
    while True:
        states = [e.state for e in _rows(host, message_id)]
        if final in states:
            return states
        assert time.monotonic() < deadline, f"QStash never reached {final}: {states}"
        await asyncio.sleep(0.02)


async def test_the_hosts_own_503s_do_not_spend_the_jobs_attempts(db_dsn: str) -> None:
    """retries=2 and two 503s from a host that takes no deliveries: still 3 handler attempts."""
    async with running_host(db_dsn) as host:
        host.ctx.accepting = False  # answers 503 + Retry-After, as while draining
        job_id = await host.enqueue(retries=2, fail_times=2, tag="patient")
        message_id = await _message_of(host, job_id)
        deadline = time.monotonic() + 30
        while _answers(host, message_id).count(503) < 2:
            assert time.monotonic() < deadline, "QStash did not come back after a 503"
            await asyncio.sleep(0.02)
        host.ctx.accepting = True

        await _until(host, message_id, "DELIVERED")
        execution = await host.wait_status(job_id, "completed")

        assert _answers(host, message_id) == [503, 503, 500, 500, 200]
        assert [c.attempt for c in host.handler.calls] == [1, 2, 3]
        assert execution.attempts == 3
        message = next(_rows(host, message_id)).message
        assert message.spec.retries == 2 + QSTASH_RETRY_HEADROOM


async def test_a_job_whose_attempts_are_spent_fails_with_489_and_no_further_start(
    db_dsn: str,
) -> None:
    async with running_host(db_dsn) as host:
        job_id = await host.enqueue(retries=2, fail_times=99, tag="hopeless")
        message_id = await _message_of(host, job_id)

        states = await _until(host, message_id, "FAILED")
        await host.wait_status(job_id, "failed")

        assert _answers(host, message_id) == [500, 500, 489], "QStash's headroom went unused"
        assert "DELIVERED" not in states
        assert [c.attempt for c in host.handler.calls] == [1, 2, 3]
        events = await host.events(job_id)
        assert [e.type_name for e in events].count("job.started") == 3
        failed = events[-1]
        assert isinstance(failed, job_events.JobFailed)
        assert failed.reason == "all 3 attempts failed"


async def test_a_delivery_after_the_last_attempt_was_abandoned_fails_the_job(
    db_dsn: str,
) -> None:
    """Abandoned attempts count: retries=1, both attempts crashed, the next delivery runs
    nothing, records the job failed and answers 489."""
    async with running_host(db_dsn, relay=False) as host:
        job_id = str(uuid.uuid4())
        past = time.time() - 1
        await host.ctx.store.append(
            f"job-{job_id}",
            [
                dispatched(job_id, retries=1, timeout=1.0),
                job_events.JobStarted(dispatch=1, attempt=1, lease_until=past),
                job_events.JobAttemptFailed(
                    dispatch=1,
                    attempt=1,
                    error_type="AttemptAbandoned",
                    error_message="crashed",
                    will_retry=True,
                    abandoned=True,
                ),
                job_events.JobStarted(dispatch=1, attempt=2, lease_until=past),
            ],
            "no_stream",
        )
        body = {"job_id": job_id, "dispatch": 1, "type": "test-job", "payload": {}}

        status, answer, headers = await host.post(TEST_PATH, body)

        assert status == 489, answer
        assert headers["Upstash-NonRetryable-Error"] == "true"
        assert host.handler.calls == []
        events = await host.events(job_id)
        assert [e.type_name for e in events][-2:] == ["job.attempt_failed", "job.failed"]
        abandoned, failed = events[-2:]
        assert isinstance(abandoned, job_events.JobAttemptFailed)
        assert (abandoned.attempt, abandoned.abandoned, abandoned.will_retry) == (2, True, False)
        assert isinstance(failed, job_events.JobFailed)
        assert failed.reason == "all 2 attempts were used"
        execution = await host.wait_status(job_id, "failed")
        assert execution.attempts == 2
