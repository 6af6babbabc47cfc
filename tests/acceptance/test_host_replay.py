"""A captured signed delivery sent again runs nothing; unsigned headers decide nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from jobstore import job_events
from tests.host_support import TEST_PATH, Host, running_host


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, relay=False) as running:
        yield running


def _body(job_id: str, payload: dict[str, object]) -> bytes:
    return orjson.dumps(
        {"job_id": job_id, "dispatch": 1, "type": "test-job", "payload": payload, "metadata": {}}
    )


async def test_a_replayed_signed_delivery_runs_nothing_and_appends_nothing(host: Host) -> None:
    job_id = await host.dispatcher.enqueue("test-job", {"fail_times": 1}, None, {"retries": 2})
    body = _body(job_id, {"fail_times": 1})
    captured = {"Upstash-Signature": host.sign(TEST_PATH, body)}

    first, _, _ = await host.post(TEST_PATH, body, signed=False, headers=captured)
    after_first = await host.types(job_id)
    replayed, answer, headers = await host.post(TEST_PATH, body, signed=False, headers=captured)

    assert first == 500  # attempt 1 failed and will be retried
    assert replayed == 503, answer  # the duplicate of a used token: try again, nothing run
    assert "Retry-After" in headers
    assert len(host.handler.calls) == 1
    assert await host.types(job_id) == after_first
    # QStash's real retry comes with a fresh token, and runs attempt 2.
    retried, _, _ = await host.post(TEST_PATH, body)
    assert retried == 200
    assert [c.attempt for c in host.handler.calls] == [1, 2]


async def test_a_replayed_token_is_recorded_once_in_the_transaction_of_its_start(
    host: Host,
) -> None:
    job_id = await host.dispatcher.enqueue("test-job", {})
    body = _body(job_id, {})
    captured = {"Upstash-Signature": host.sign(TEST_PATH, body)}

    results = await asyncio.gather(
        *(host.post(TEST_PATH, body, signed=False, headers=captured) for _ in range(5))
    )

    assert sorted(status for status, _, _ in results).count(200) >= 1
    assert len(host.handler.calls) == 1
    started = [e for e in await host.events(job_id) if isinstance(e, job_events.JobStarted)]
    assert len(started) == 1
    rows = await host.ctx.store.pool.fetch(
        "SELECT stream_id, expires_at FROM jobtrail.delivery_tokens"
    )
    assert [r["stream_id"] for r in rows] == [f"job-{job_id}"]
    assert rows[0]["expires_at"].timestamp() > time.time()


async def test_expired_delivery_tokens_are_pruned(host: Host) -> None:
    job_id = await host.dispatcher.enqueue("test-job", {})
    status, _, _ = await host.post(TEST_PATH, _body(job_id, {}))
    assert status == 200
    pool = host.ctx.store.pool
    await pool.execute(
        "UPDATE jobtrail.delivery_tokens SET expires_at = now() - interval '1 second'"
    )

    assert await host.ctx.store.prune_delivery_tokens() == 1
    assert await pool.fetchval("SELECT count(*) FROM jobtrail.delivery_tokens") == 0


async def test_upstash_retried_on_a_first_delivery_does_not_spend_the_retry_budget(
    host: Host,
) -> None:
    job_id = await host.dispatcher.enqueue("test-job", {"fail_times": 1}, None, {"retries": 1})
    body = _body(job_id, {"fail_times": 1})

    status, _, _ = await host.post(TEST_PATH, body, headers={"Upstash-Retried": "99"})

    assert status == 500  # attempt 1 failed; one retry is left
    assert [c.attempt for c in host.handler.calls] == [1]
    execution = await host.dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert execution.status == "retrying"
    status, _, _ = await host.post(TEST_PATH, body, headers={"Upstash-Retried": "0"})
    assert status == 200
    assert [c.attempt for c in host.handler.calls] == [1, 2]
