"""The projection runner: exactly-once batches, leadership, takeover, stopping on a bad event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

import jobstore
import projections
from projections import checkpoint
from projections import runner as runner_module
from projections.log_reader import LogReader
from projections.projection import Projection
from tests.projection_support import (
    append,
    attempt_failed,
    completed,
    counted_stats,
    dispatched,
    failed,
    new_job_id,
    snapshot,
    started,
)

CLEANUP = {"retention": 30}


async def stop(task: asyncio.Task[None]) -> None:
    """Stop a runner's task (as its host dying or shutting down would)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(runner: projections.ProjectionRunner) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``runner`` in the background for the block, then stop it."""
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        await stop(task)


class Crash(BaseException):
    """The process dies here (not an error the runner handles)."""


class CrashingView:
    """Wraps a projection: applies the batch, then dies before the commit, once."""

    def __init__(self, inner: Projection, on_call: int, how: str) -> None:
        self.inner, self.on_call, self.how, self.calls = inner, on_call, how, 0
        self.name, self.tables = inner.name, inner.tables

    async def apply(self, conn: Any, batch: Sequence[jobstore.RecordedEvent]) -> None:
        self.calls += 1
        await self.inner.apply(conn, batch)
        if self.calls == self.on_call:
            if self.how == "connection killed":
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            raise Crash("the host died mid-batch")


class ProbeView:
    """Wraps a projection and records who applies what, and how many at once."""

    active: dict[str, int] = {}
    most: dict[str, int] = {}
    positions: dict[str, list[int]] = {}

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name, self.tables = inner.name, inner.tables

    async def apply(self, conn: Any, batch: Sequence[jobstore.RecordedEvent]) -> None:
        name = self.name
        self.active[name] = self.active.get(name, 0) + 1
        self.most[name] = max(self.most.get(name, 0), self.active[name])
        try:
            await asyncio.sleep(0.001)  # give a second applier every chance to overlap
            await self.inner.apply(conn, batch)
            self.positions.setdefault(name, []).extend(r.position for r in batch)
        finally:
            self.active[name] -= 1


async def test_views_show_dispatched_jobs_after_catching_up(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    first = await dispatcher.enqueue("cleanup-old-data", CLEANUP, {"user_id": 5})
    second = await dispatcher.enqueue("cleanup-old-data", CLEANUP, {"organization_id": 9})
    await dispatcher.cancel(second, "not needed")

    applied = await projections.ProjectionRunner(pool, db_dsn).run_until_caught_up()

    assert applied == 3 * 3  # three projections, three events
    rows = {r["job_id"]: r for r in await pool.fetch("SELECT * FROM jobtrail.job_executions")}
    assert (rows[first]["status"], rows[first]["user_id"]) == ("pending", 5)
    assert (rows[second]["status"], rows[second]["organization_id"]) == ("cancelled", 9)
    assert await counted_stats(pool) == [
        ("cleanup-old-data", "cancelled", 1),
        ("cleanup-old-data", "pending", 1),
    ]


@pytest.mark.parametrize("how", ["crash", "connection killed"])
async def test_a_restart_in_the_middle_of_a_batch_counts_nothing_twice(
    pool: asyncpg.Pool, db_dsn: str, how: str
) -> None:
    store = jobstore.EventStore(pool)
    for _ in range(4):
        job = new_job_id()
        await append(store, job, dispatched(job), started(), attempt_failed(), completed())
    views = [CrashingView(p, on_call=2, how=how) for p in projections.builtin_projections()]

    with pytest.raises((Crash, jobstore.DatabaseUnavailableError, asyncpg.PostgresError)):
        await projections.ProjectionRunner(pool, db_dsn, views, batch_size=6).run_until_caught_up()
    states = await checkpoint.states(pool, ["job_attempts"])
    assert states[0].position == 6  # the first batch committed, the second did not

    await projections.ProjectionRunner(pool, db_dsn, batch_size=6).run_until_caught_up()
    incremental = await snapshot(pool)
    assert await counted_stats(pool) == [("cleanup-old-data", "completed", 4)]
    assert len(incremental["job_attempts"]) == 4
    await projections.rebuild(pool, db_dsn)
    assert await snapshot(pool) == incremental


async def test_a_batch_is_applied_once_even_by_two_followers_without_the_lock(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    """The checkpoint moves by compare-and-set: the loser of a race changes nothing."""
    store = jobstore.EventStore(pool)
    job = new_job_id()
    position = await append(store, job, dispatched(job))
    both_read = asyncio.Barrier(2)

    def follower() -> jobstore.Follower:
        async def read(after: jobstore.Cursor) -> jobstore.Page:
            page = await store.read_after(after, 10)
            await both_read.wait()  # both start from the same checkpoint and batch
            return page

        handler = runner_module._Apply(projections.ExecutionView())
        return jobstore.Follower(
            store, "job_executions", handler, dsn=db_dsn, elected=False, read=read
        )

    outcomes = await asyncio.gather(
        follower().run_until_caught_up(position),
        follower().run_until_caught_up(position),
        return_exceptions=True,
    )

    applied = [o for o in outcomes if isinstance(o, int)]
    lost = [o for o in outcomes if isinstance(o, jobstore.LeadershipLost)]
    assert (applied, len(lost)) == ([1], 1), outcomes
    assert await counted_stats(pool) == [("cleanup-old-data", "pending", 1)]


async def test_two_runners_never_both_apply(pool: asyncpg.Pool, db_dsn: str) -> None:
    store = jobstore.EventStore(pool)
    ProbeView.active, ProbeView.most, ProbeView.positions = {}, {}, {}

    def runner() -> projections.ProjectionRunner:
        views = [ProbeView(p) for p in projections.builtin_projections()]
        return projections.ProjectionRunner(pool, db_dsn, views, batch_size=5, leader_retry=0.05)

    async with running(runner()), running(runner()):
        last = 0
        for _ in range(30):
            job = new_job_id()
            last = await append(store, job, dispatched(job), started(), completed())
        await projections.wait_for_position(pool, last, timeout=30)

    assert ProbeView.most == {"job_attempts": 1, "job_buckets": 1, "job_executions": 1}
    for name in ("job_attempts", "job_buckets", "job_executions"):
        assert sorted(ProbeView.positions[name]) == list(range(1, last + 1))
    assert await counted_stats(pool) == [("cleanup-old-data", "completed", 30)]


async def test_a_standby_takes_over_when_the_leader_dies(pool: asyncpg.Pool, db_dsn: str) -> None:
    leader = projections.ProjectionRunner(pool, db_dsn, leader_retry=0.05)
    standby = projections.ProjectionRunner(pool, db_dsn, leader_retry=0.05)
    store = jobstore.EventStore(pool)
    leader_task = asyncio.create_task(leader.run())
    try:
        for name in ("job_attempts", "job_executions"):
            await asyncio.wait_for(leader.leading(name).wait(), 10)
        async with running(standby):
            job = new_job_id()
            await projections.wait_for_position(pool, await append(store, job, dispatched(job)))
            assert not standby.leading("job_executions").is_set()
            await stop(leader_task)  # the leader's host dies, and its lock connection with it
            for name in ("job_attempts", "job_executions"):
                await asyncio.wait_for(standby.leading(name).wait(), 10)
            job = new_job_id()
            position = await append(store, job, dispatched(job), started(), completed())
            await projections.wait_for_position(pool, position)
    finally:
        await stop(leader_task)

    assert await counted_stats(pool) == [
        ("cleanup-old-data", "completed", 1),
        ("cleanup-old-data", "pending", 1),
    ]


async def test_a_bad_event_stops_its_projection_there_and_says_so(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    good, bad, later = new_job_id(), new_job_id(), new_job_id()
    good_position = await append(store, good, dispatched(good))
    bad_position = await append(store, bad, started())  # a job stream must start dispatched
    later_position = await append(store, later, dispatched(later))
    runner = projections.ProjectionRunner(pool, db_dsn)

    for _ in range(2):  # trying again stops at the same place
        with pytest.raises(projections.ProjectionFailed) as caught:
            await runner.run_until_caught_up()
        assert (caught.value.position, caught.value.event_type) == (bad_position, "job.started")
        assert f"position {bad_position}" in str(caught.value)

    status = {s.name: s for s in await projections.projection_status(pool)}
    executions = status["job_executions"]
    assert executions.position == good_position
    assert executions.failure is not None and executions.failure.position == bad_position
    assert executions.failure.stream_id == f"job-{bad}"
    assert "starts with job.started" in executions.failure.error
    assert status["job_attempts"].position == later_position
    assert status["job_attempts"].failure is None
    ids = {r["job_id"] for r in await pool.fetch("SELECT job_id FROM jobtrail.job_executions")}
    assert ids == {good}
    with pytest.raises(projections.ProjectionFailed):
        await projections.wait_for_position(pool, later_position)


async def test_the_runner_follows_new_events_as_they_are_appended(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    async with running(projections.ProjectionRunner(pool, db_dsn)):
        for _ in range(3):
            enqueued = await dispatcher.enqueue_with_position("cleanup-old-data", CLEANUP)
            assert enqueued.position is not None
            await projections.wait_for_position(pool, enqueued.position)
            status = await pool.fetchval(
                "SELECT status FROM jobtrail.job_executions WHERE job_id = $1", enqueued.job_id
            )
            assert status == "pending"


async def test_waiting_for_a_position_no_runner_reaches_times_out_clearly(
    pool: asyncpg.Pool,
) -> None:
    job = new_job_id()
    position = await append(jobstore.EventStore(pool), job, dispatched(job), failed())
    with pytest.raises(projections.ProjectionTimeoutError, match=f"not yet at {position}"):
        await projections.wait_for_position(pool, position, timeout=0.05)


async def test_the_log_reader_shares_full_batches_and_rereads_the_head(
    pool: asyncpg.Pool,
) -> None:
    store = jobstore.EventStore(pool)
    for _ in range(3):
        job = new_job_id()
        await append(store, job, dispatched(job))
    reader = LogReader(store, batch_size=2)
    await readable(store)
    try:
        first, again = await asyncio.gather(
            reader.after(jobstore.START), reader.after(jobstore.START)
        )
        assert [r.position for r in first.events] == [r.position for r in again.events] == [1, 2]
        second = jobstore.Cursor.of(first.events[-1])
        head = await reader.after(second)
        assert [r.position for r in head.events] == [3]
        job = new_job_id()
        await append(store, job, dispatched(job))
        await readable(store)
        # not the short batch kept
        assert [r.position for r in (await reader.after(second)).events] == [3, 4]
    finally:
        reader.close()


async def readable(store: jobstore.EventStore) -> None:
    """Until no committed event waits behind a transaction running elsewhere on the server."""
    for _ in range(2000):
        if not (await store.read_after(await store.head(), 1)).held_back:
            return
        await asyncio.sleep(0.005)


class FlakyView:
    """Wraps a projection and fails on its first call (a bug, later fixed)."""

    def __init__(self, inner: Projection) -> None:
        self.inner, self.name, self.tables, self.calls = inner, inner.name, inner.tables, 0

    async def apply(self, conn: Any, batch: Sequence[jobstore.RecordedEvent]) -> None:
        self.calls += 1
        if self.calls <= 2:  # the batch, then its first event alone
            raise RuntimeError("a bug in the projection")
        await self.inner.apply(conn, batch)


async def test_a_projection_that_gets_past_its_failure_clears_it(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    job = new_job_id()
    position = await append(store, job, dispatched(job), started())
    runner = projections.ProjectionRunner(pool, db_dsn, [FlakyView(projections.ExecutionView())])

    with pytest.raises(projections.ProjectionFailed, match="a bug in the projection"):
        await runner.run_until_caught_up()
    (stopped,) = await projections.projection_status(pool, ["job_executions"])
    assert stopped.failure is not None and stopped.failure.position == 1

    await runner.run_until_caught_up()  # the bug is gone
    (running,) = await projections.projection_status(pool, ["job_executions"])
    assert (running.position, running.failure) == (position, None)
