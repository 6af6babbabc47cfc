"""The pending jobs' figures of the stats (``jobtrail stats``, ``/metrics``), per type."""

from __future__ import annotations

from typing import Any

import asyncpg

import projections
from jobstore import EventStore, query
from projections import stats
from tests.projection_support import append, completed, dispatched, failed, new_job_id, started

LIMITED = {"retries": 2, "flow_control": {"key": "held", "parallelism": 1}}


def redispatched(job_id: str, options: dict[str, Any]) -> Any:
    return dispatched(job_id, dispatch=2, source="replay", options=options)


async def test_pending_jobs_are_counted_per_type_with_their_current_limit(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    """A job counts as waiting on a limit when its current dispatch has one: a replay
    with a limit counts, a replay without one does not, whatever the first dispatch had."""
    store = EventStore(pool)
    free, held, unlimited_replay, limited_replay, done = (new_job_id() for _ in range(5))
    await append(store, free, dispatched(free))
    await append(store, held, dispatched(held, options=LIMITED))
    await append(
        store,
        unlimited_replay,
        dispatched(unlimited_replay, options=LIMITED),
        started(),
        failed(),
        redispatched(unlimited_replay, {"retries": 2}),
    )
    await append(
        store,
        limited_replay,
        dispatched(limited_replay, job_type="export-data"),
        started(),
        failed(),
        redispatched(limited_replay, LIMITED),
    )
    await append(store, done, dispatched(done, options=LIMITED), started(), completed())
    await projections.ProjectionRunner(pool, db_dsn).run_until_caught_up()

    result = await stats.get_job_stats(pool, with_pending=True)

    cleanup = result.by_type["cleanup-old-data"]
    assert (cleanup.pending.count, cleanup.pending.waiting_on_limit) == (3, 1)
    export = result.by_type["export-data"]
    assert (export.pending.count, export.pending.waiting_on_limit) == (1, 1)
    assert cleanup.pending.oldest_age_seconds is not None
    assert cleanup.pending.oldest_age_seconds >= 0
    assert result.by_type["export-data"].pending.oldest_age_seconds is not None
    without = await stats.get_job_stats(pool, with_pending=False)
    assert without.by_type["cleanup-old-data"].pending == stats.PendingStats(0, 0, None)


async def test_pending_figures_read_the_view_not_the_log(pool: asyncpg.Pool) -> None:
    """Every scrape reads them: the plan touches the view only, never the event log."""
    sql = query.load("projections", "reader.sql")["read_pending"]
    plan = "\n".join(r[0] for r in await pool.fetch("EXPLAIN (VERBOSE) " + sql))
    assert "jobtrail.job_executions" in plan
    assert "jobtrail.events" not in plan
