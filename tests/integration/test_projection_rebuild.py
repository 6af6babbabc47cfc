"""Rebuild: fresh tables from the whole log, swapped in at once, under the leadership lock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

import jobstore
import projections
from projections.projection import Projection
from tests.projection_support import (
    append,
    archive,
    completed,
    dispatched,
    failed,
    new_job_id,
    snapshot,
    started,
)

INDEXES = """
SELECT tablename, indexname, regexp_replace(indexdef, ' ON \\S+', '') AS definition
  FROM pg_indexes WHERE schemaname = 'jobtrail' AND tablename LIKE 'job\\_%'
 ORDER BY tablename, indexname
"""


async def some_jobs(store: jobstore.EventStore, count: int = 5) -> list[str]:
    jobs = []
    for n in range(count):
        job = new_job_id()
        events: list[jobstore.Event] = [dispatched(job), started()]
        events.append(completed(seconds=n / 10) if n % 2 else failed())
        await append(store, job, *events)
        jobs.append(job)
    return jobs


class PeekingView:
    """Wraps a projection; while it fills its shadow, it looks at the live table."""

    def __init__(self, inner: Projection) -> None:
        self.inner, self.name, self.tables = inner, inner.name, inner.tables
        self.live_counts: list[int] = []

    async def apply(self, conn: Any, batch: Sequence[jobstore.RecordedEvent]) -> None:
        await self.inner.apply(conn, batch)
        self.live_counts.append(await conn.fetchval("SELECT count(*) FROM jobtrail.job_executions"))


async def test_a_rebuild_equals_the_live_views_and_keeps_the_schema(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    jobs = await some_jobs(store)
    await archive(store, jobs[0])
    await projections.ProjectionRunner(pool, db_dsn).run_until_caught_up()
    live, indexes = await snapshot(pool), await pool.fetch(INDEXES)
    progress: list[tuple[int, int]] = []

    result = await projections.rebuild(
        pool, db_dsn, batch_size=4, progress=lambda p, h: progress.append((p, h))
    )

    head = await store.last_position()
    assert (result.events, result.position) == (head, head)
    assert sorted(result.names) == ["job_attempts", "job_buckets", "job_executions"]
    assert progress[-1] == (head, head)
    assert [p for p, _ in progress] == sorted(p for p, _ in progress)
    assert await snapshot(pool) == live
    assert len(live["job_executions"]) == 4
    assert await pool.fetch(INDEXES) == indexes
    assert not await pool.fetchval(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'jobtrail_rebuild'"
    )
    for status in await projections.projection_status(pool):
        assert (status.position, status.lag, status.failure) == (head, 0, None)


async def test_readers_see_the_old_views_until_the_swap(pool: asyncpg.Pool, db_dsn: str) -> None:
    store = jobstore.EventStore(pool)
    await some_jobs(store, 6)
    await projections.ProjectionRunner(pool, db_dsn).run_until_caught_up()
    peeking = PeekingView(projections.ExecutionView())

    await projections.rebuild(pool, db_dsn, projections=[peeking], batch_size=3)

    assert peeking.live_counts and set(peeking.live_counts) == {6}


async def test_a_rebuild_takes_the_lead_from_a_live_runner_which_then_resumes(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    await some_jobs(store, 3)
    runner = projections.ProjectionRunner(pool, db_dsn, leader_retry=0.05, idle_poll=0.05)
    task = asyncio.create_task(runner.run())
    try:
        for name in ("job_attempts", "job_executions"):
            await asyncio.wait_for(runner.leading(name).wait(), 10)
        await projections.wait_for_position(pool, await store.last_position())

        await projections.rebuild(pool, db_dsn, lock_timeout=10)

        job = new_job_id()
        await projections.wait_for_position(pool, await append(store, job, dispatched(job)))
        count = await pool.fetchval("SELECT count(*) FROM jobtrail.job_executions")
        assert count == 4
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_rebuild_that_meets_a_bad_event_leaves_the_live_views_alone(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    await some_jobs(store, 2)
    await projections.ProjectionRunner(pool, db_dsn).run_until_caught_up()
    live = await snapshot(pool)
    bad = new_job_id()
    bad_position = await append(store, bad, completed())

    with pytest.raises(projections.ProjectionFailed) as caught:
        await projections.rebuild(pool, db_dsn, ["job_executions"])

    assert (caught.value.position, caught.value.event_type) == (bad_position, "job.completed")
    assert await snapshot(pool) == live
    assert not await pool.fetchval(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'jobtrail_rebuild'"
    )


async def test_rebuilding_one_projection_leaves_the_others_checkpoint(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    await some_jobs(store, 2)
    result = await projections.rebuild(pool, db_dsn, ["job_attempts"])
    status = {s.name: s.position for s in await projections.projection_status(pool)}
    assert status == {"job_attempts": result.position, "job_buckets": 0, "job_executions": 0}
    with pytest.raises(projections.UnknownProjectionError, match="known: job_attempts"):
        await projections.rebuild(pool, db_dsn, ["jobs"])


async def test_rows_written_by_copy_equal_rows_written_by_upsert(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    """Big batches insert new rows with COPY, small ones upsert JSON: same views."""
    store = jobstore.EventStore(pool)
    jobs = await some_jobs(store, 60)
    await archive(store, *jobs[:3])
    await projections.ProjectionRunner(pool, db_dsn, batch_size=3).run_until_caught_up()
    small_batches = await snapshot(pool)

    await projections.rebuild(pool, db_dsn, batch_size=5000)

    assert await snapshot(pool) == small_batches
    assert len(small_batches["job_executions"]) == 57
