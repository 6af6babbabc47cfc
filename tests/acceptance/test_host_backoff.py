"""Backoff: the host decides the delay before the next attempt and records it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

import jobstore
from jobstore import job_events
from tests.host_support import TEST_PATH, Host, running_host


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, relay=False) as running:
        yield running


def _body(job_id: str) -> bytes:
    return orjson.dumps(
        {"job_id": job_id, "dispatch": 1, "type": "test-job", "payload": {}, "metadata": {}}
    )


async def _failures(host: Host, job_id: str) -> list[job_events.JobAttemptFailed]:
    return [e for e in await host.events(job_id) if isinstance(e, job_events.JobAttemptFailed)]


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ({"kind": "exponential", "base": 2, "factor": 3, "cap": 10}, [2, 6, 10]),
        ({"kind": "linear", "base": 4}, [4, 8, 12]),
        ({"kind": "fixed", "base": 5}, [5, 5, 5]),
    ],
)
async def test_each_failed_attempt_answers_and_records_the_backoff_delay(
    host: Host, backoff: dict[str, object], delays: list[int]
) -> None:
    job_id = await host.dispatcher.enqueue(
        "test-job", {"fail_times": 9}, None, {"retries": 3, "backoff": backoff}
    )
    answered = []
    for _ in delays:
        status, _, headers = await host.post(TEST_PATH, _body(job_id))
        assert status == 500
        answered.append(int(headers["Retry-After"]))

    assert answered == delays
    recorded = [f.retry_after_seconds for f in await _failures(host, job_id)]
    assert recorded == [float(d) for d in delays]


async def test_a_handler_asks_for_its_own_delay_with_retry_later(host: Host) -> None:
    job_id = await host.dispatcher.enqueue("test-job", {"retry_later": 42}, None, {"retries": 1})

    status, _, headers = await host.post(TEST_PATH, _body(job_id))

    assert (status, headers["Retry-After"]) == (500, "42")
    [failure] = await _failures(host, job_id)
    assert (failure.error_type, failure.retry_after_seconds) == ("RetryLater", 42.0)


async def test_without_a_backoff_qstash_keeps_its_own_schedule(host: Host) -> None:
    job_id = await host.dispatcher.enqueue("test-job", {"fail_times": 9}, None, {"retries": 2})

    status, _, headers = await host.post(TEST_PATH, _body(job_id))

    assert status == 500 and "Retry-After" not in headers
    [failure] = await _failures(host, job_id)
    assert failure.retry_after_seconds is None


async def test_a_type_may_bring_its_own_backoff_function(host: Host) -> None:
    registry = host.ctx.registry
    spec = registry.get("test-job")
    registry.register(
        spec.config, spec.payload_model, spec.handler, replace=True, backoff=lambda n: 100 * n
    )
    job_id = await host.dispatcher.enqueue("test-job", {"fail_times": 9}, None, {"retries": 2})

    _, _, headers = await host.post(TEST_PATH, _body(job_id))

    assert headers["Retry-After"] == "100"
    with pytest.raises(jobstore.JobError, match="give 0 to 604800 seconds"):
        registry.register(spec.config, spec.payload_model, replace=True, backoff=lambda n: -1)
    with pytest.raises(jobstore.JobValidationError):
        await host.dispatcher.enqueue("test-job", {}, None, {"backoff": {"kind": "random"}})
