"""Idempotency keys: forever by default (archived jobs included), or per sliding window."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

import jobstore
from jobstore.dispatcher import Dispatcher, JobRequest

PAYLOAD = {"retention": 30}
FUTURE = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
def dispatcher(store: jobstore.EventStore) -> Dispatcher:
    return Dispatcher(store)


async def test_within_the_window_the_key_returns_its_job_after_it_a_new_one(
    dispatcher: Dispatcher,
) -> None:
    metadata = {"idempotency_key": "nightly-7", "organization_id": 7}
    window = {"unique_for": "1s"}
    first = await dispatcher.enqueue_with_position("cleanup-old-data", PAYLOAD, metadata, window)
    again = await dispatcher.enqueue_with_position("cleanup-old-data", PAYLOAD, metadata, window)
    assert (again.job_id, again.created) == (first.job_id, False)

    await asyncio.sleep(1.2)  # the window is measured from the job's creation
    later = await dispatcher.enqueue_with_position("cleanup-old-data", PAYLOAD, metadata, window)
    assert later.created and later.job_id != first.job_id
    forever = await dispatcher.enqueue_with_position("cleanup-old-data", PAYLOAD, metadata)
    assert (forever.job_id, forever.created) == (first.job_id, False)  # no window: forever


async def test_concurrent_enqueues_inside_one_window_give_one_job(dispatcher: Dispatcher) -> None:
    metadata = {"idempotency_key": "burst"}

    results = await asyncio.gather(
        *(
            dispatcher.enqueue_with_position(
                "cleanup-old-data", PAYLOAD, metadata, {"unique_for": 600}
            )
            for _ in range(20)
        )
    )

    assert len({r.job_id for r in results}) == 1
    assert sum(r.created for r in results) == 1


async def test_an_archived_jobs_key_stays_taken(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    metadata = {"idempotency_key": "archived-key"}
    job_id = await dispatcher.enqueue("cleanup-old-data", PAYLOAD, metadata)
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": "completed"})
    assert await store.archive_streams([f"job-{job_id}"], FUTURE, 30) == [f"job-{job_id}"]

    again = await dispatcher.enqueue_with_position("cleanup-old-data", PAYLOAD, metadata)

    assert (again.job_id, again.created) == (job_id, False)
    assert await store.read_stream(f"job-{job_id}") == []  # nothing new beside the archive


async def test_a_window_is_refused_in_enqueue_many(dispatcher: Dispatcher) -> None:
    request = JobRequest("cleanup-old-data", PAYLOAD, {"idempotency_key": "k"}, {"unique_for": 5})
    with pytest.raises(jobstore.JobValidationError, match="problem"):
        await dispatcher.enqueue_many([request])
