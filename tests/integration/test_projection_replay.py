"""Replay end to end: through the dispatcher, seen in the views as pending again."""

from __future__ import annotations

import asyncpg
import pytest

import jobstore
import projections
from jobstore import JOB_STATUSES
from projections import reader, replay
from projections.filter import JobFilter

CLEANUP = {"retention": 30}


async def make_failed(dispatcher: jobstore.Dispatcher, job_type: str = "cleanup-old-data") -> str:
    payload = (
        CLEANUP
        if job_type == "cleanup-old-data"
        else {"url": "https://example.com/hook", "event": "x"}
    )
    job_id = await dispatcher.enqueue(job_type, payload)
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": "failed", "error": "disk full"})
    return job_id


async def test_a_replayed_job_shows_pending_again_with_replay_count_one(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    runner = projections.ProjectionRunner(pool, db_dsn)
    job_id = await make_failed(dispatcher)
    await runner.run_until_caught_up()
    before = await reader.get_job_execution(pool, job_id)
    assert before is not None and (before.status, before.error) == ("failed", "Error: disk full")

    position = await dispatcher.replay_job(job_id, "disk cleaned")
    await runner.run_until_caught_up()
    await projections.wait_for_position(pool, position)

    after = await reader.get_job_execution(pool, job_id)
    assert after is not None
    assert (after.status, after.replay_count, after.dispatch) == ("pending", 1, 2)
    with pytest.raises(jobstore.JobError) as caught:
        await dispatcher.replay_job(job_id)
    assert caught.value.code == "NOT_REPLAYABLE"


async def test_bulk_replay_replays_what_the_filter_selects_and_reports_progress(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    runner = projections.ProjectionRunner(pool, db_dsn)
    failed = [await make_failed(dispatcher) for _ in range(4)]
    other_type = await make_failed(dispatcher, "process-webhook")
    cancelled = await dispatcher.enqueue("cleanup-old-data", CLEANUP)
    await dispatcher.cancel(cancelled, "oops")
    done = await dispatcher.enqueue("cleanup-old-data", CLEANUP)
    await dispatcher.update_job_execution(done, {"status": "processing"})
    await dispatcher.update_job_execution(done, {"status": "completed"})
    await runner.run_until_caught_up()
    seen: list[tuple[int, int]] = []

    outcome = await replay.replay_jobs(
        pool,
        dispatcher,
        JobFilter(type="cleanup-old-data"),
        reason="bulk",
        progress=lambda n, total: seen.append((n, total)),
    )

    assert outcome.selected == 5
    assert sorted(outcome.replayed) == sorted([*failed, cancelled])
    assert outcome.skipped == {}
    assert seen[-1] == (5, 5) and len(seen) == 5
    await runner.run_until_caught_up()
    await projections.wait_for_position(pool, outcome.position)
    pending = await reader.list_job_executions(pool, status="pending")
    assert {item.job_id for item in pending.items} == {*failed, cancelled}
    assert {item.replay_count for item in pending.items} == {1}
    still_failed = await reader.list_job_executions(pool, status="failed")
    assert [item.job_id for item in still_failed.items] == [other_type]
    again = await replay.replay_jobs(pool, dispatcher, JobFilter(type="cleanup-old-data"))
    assert (again.selected, again.count) == (0, 0)


async def test_bulk_replay_skips_a_job_that_moved_on_since_the_views_saw_it(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    job_id = await make_failed(dispatcher)
    await projections.ProjectionRunner(pool, db_dsn).run_until_caught_up()
    await dispatcher.replay_job(job_id, "someone was faster")  # the views still say failed

    outcome = await replay.replay_jobs(pool, dispatcher, JobFilter(status=JOB_STATUSES.FAILED))

    assert outcome.count == 0
    assert outcome.skipped[job_id].startswith("NOT_REPLAYABLE: ")


async def test_bulk_replay_refuses_a_status_that_cannot_be_replayed(pool: asyncpg.Pool) -> None:
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    with pytest.raises(projections.InvalidFilterError) as caught:
        await replay.replay_jobs(pool, dispatcher, JobFilter(status="completed"))  # type: ignore[arg-type]
    assert caught.value.parameter == "status"


async def test_bulk_replay_without_a_filter_or_with_a_stale_count_replays_nothing(
    pool: asyncpg.Pool,
) -> None:
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    with pytest.raises(projections.InvalidFilterError) as caught:
        await replay.replay_jobs(pool, dispatcher)
    assert caught.value.parameter == "filter"
    with pytest.raises(projections.InvalidFilterError):
        await replay.replay_jobs(pool, dispatcher, JobFilter())
    with pytest.raises(projections.CountMismatchError) as mismatch:
        await replay.replay_jobs(
            pool, dispatcher, JobFilter(type="cleanup-old-data"), expected_count=3
        )
    assert (mismatch.value.count, mismatch.value.expected) == (0, 3)
