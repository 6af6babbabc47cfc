"""Deduplication and replay consult the archive: an archived job's key stays its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import jobstore
from jobstore import job_events, job_state
from jobstore.dispatcher import Dispatcher, JobRequest
from jobstore.store import NO_STREAM

PAYLOAD = {"retention": 30}
KEY = {"idempotency_key": "nightly-cleanup", "organization_id": 3}
FUTURE = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
def dispatcher(store: jobstore.EventStore) -> Dispatcher:
    return Dispatcher(store)


async def _finish(dispatcher: Dispatcher, job_id: str, status: str = "completed") -> None:
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": status, "error": "boom"})


async def _archived_key_job(dispatcher: Dispatcher, store: jobstore.EventStore) -> str:
    job_id = await dispatcher.enqueue("cleanup-old-data", PAYLOAD, KEY)
    await _finish(dispatcher, job_id)
    assert await store.archive_streams([f"job-{job_id}"], FUTURE, 30) == [f"job-{job_id}"]
    return job_id


async def test_reenqueue_an_archived_key_and_archive_again(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    """The key returns its archived job (saying so); the next archiving batch succeeds."""
    job_id = await _archived_key_job(dispatcher, store)
    history = await store.read_archived_stream(f"job-{job_id}")

    again = await dispatcher.enqueue_with_position("cleanup-old-data", PAYLOAD, KEY)
    in_bulk = await dispatcher.enqueue_many([JobRequest("cleanup-old-data", PAYLOAD, KEY)])

    assert (again.job_id, again.created, again.archived) == (job_id, False, True)
    assert in_bulk == [job_id]
    assert await store.read_stream(f"job-{job_id}") == [], "no second life for the stream"
    other = await dispatcher.enqueue("cleanup-old-data", PAYLOAD)
    await _finish(dispatcher, other, "failed")
    moved = await store.archive_streams([f"job-{job_id}", f"job-{other}"], FUTURE, 30)
    assert moved == [f"job-{other}"], "the batch moved the other job and failed nothing"
    assert await store.read_archived_stream(f"job-{job_id}") == history, "archive unchanged"


async def test_the_database_refuses_to_create_an_archived_stream_again(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    """Even a writer that never looked in the archive (an archiving raced its look)."""
    job_id = await _archived_key_job(dispatcher, store)
    dispatched = (await store.read_archived_stream(f"job-{job_id}"))[0].event
    assert isinstance(dispatched, job_events.JobDispatched)

    with pytest.raises(jobstore.ConcurrencyError):
        await store.append(f"job-{job_id}", [dispatched], NO_STREAM)
    outcome = await store.append_each(
        [jobstore.StreamAppend(f"job-{job_id}", [dispatched], NO_STREAM)]
    )

    assert isinstance(outcome[0], jobstore.ConcurrencyError)
    assert await store.read_stream(f"job-{job_id}") == []


async def test_an_archived_job_id_cannot_be_created_again(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    job_id = await _archived_key_job(dispatcher, store)
    with pytest.raises(jobstore.JobError) as raised:
        await dispatcher.dispatch_job_execution(
            {"job_id": job_id, "job_type": "cleanup-old-data", "payload": PAYLOAD}
        )
    assert raised.value.code == "JOB_EXISTS"


async def test_replaying_or_cancelling_an_archived_job_is_refused_with_the_reason(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    job_id = await dispatcher.enqueue("cleanup-old-data", PAYLOAD)
    await _finish(dispatcher, job_id, "failed")
    await store.archive_streams([f"job-{job_id}"], FUTURE, 30)

    with pytest.raises(jobstore.JobError, match=r"archived.*cannot be replayed") as raised:
        await dispatcher.replay_job(job_id, "try again")
    assert raised.value.code == "JOB_ARCHIVED"
    with pytest.raises(jobstore.JobError, match="archived"):
        await dispatcher.cancel(job_id)
    assert await store.read_stream(f"job-{job_id}") == [], "nothing written"
    with pytest.raises(jobstore.JobError) as unknown:
        await dispatcher.replay_job("8d1f0c3e-0000-4000-8000-000000000000")
    assert unknown.value.code == "JOB_NOT_FOUND"


async def test_a_stream_created_anew_before_the_fix_does_not_fail_its_batch(
    dispatcher: Dispatcher, store: jobstore.EventStore, db_dsn: str
) -> None:
    """Data written by an older version (a stream recreated after archiving) is left out."""
    job_id = await _archived_key_job(dispatcher, store)
    stream = job_state.stream_id(job_id)
    conn = await asyncpg.connect(db_dsn)
    try:  # what the old append did: a new stream at version 1, beside the archived one
        await conn.execute(
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)"
            " SELECT stream_id, version, event_type, schema_version, data"
            "   FROM jobtrail.events_archive WHERE stream_id = $1",
            stream,
        )
    finally:
        await conn.close()
    other = await dispatcher.enqueue("cleanup-old-data", PAYLOAD)
    await _finish(dispatcher, other)

    moved = await store.archive_streams([stream, f"job-{other}"], FUTURE, 30)

    assert moved == [f"job-{other}"]
    assert len(await store.read_stream(stream)) == 3, "left in the log, not lost"


async def test_a_decision_made_before_archiving_is_not_appended_after_it(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    """A writer that loaded the job before it was archived matches the archived versions;
    the database refuses the append all the same (sql/0035)."""
    job_id = await dispatcher.enqueue("cleanup-old-data", PAYLOAD)
    await _finish(dispatcher, job_id, "failed")
    state = await dispatcher.load(job_id)
    assert state is not None
    replay = job_state.decide_replay(state, "late", None, None)
    await store.archive_streams([f"job-{job_id}"], FUTURE, 30)

    with pytest.raises(jobstore.ConcurrencyError):
        await store.append(f"job-{job_id}", replay, state.version)


async def test_the_api_says_a_key_returned_an_archived_job_and_refuses_its_replay(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    from tests.integration.test_projection_api import api_client

    async with api_client(pool, db_dsn) as api:
        store = jobstore.EventStore(pool)
        job_id = await _archived_key_job(Dispatcher(store), store)
        body = {"type": "cleanup-old-data", "payload": PAYLOAD, "metadata": KEY}

        status, enqueued = await api.call("POST", "/jobs", json=body)
        replay_status, refused = await api.call("POST", f"/jobs/{job_id}/replay", json={})

    assert status == 200
    assert (enqueued["job_id"], enqueued["created"], enqueued["archived"]) == (job_id, False, True)
    assert replay_status == 409
    assert "archived" in str(refused)
