"""Retention runs by itself: old finished jobs archived, unfinished never, one host at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web

import jobstore
import projections
from bench.projections import LOAD
from bench.projections import job_id as bench_job_id
from workers import retention
from workers.app import HostOptions, make_app

OLD_JOBS = 20  # bench shapes: j % 10 == 9 is pending (dispatched only), the rest finished
OLD_FINISHED = [j for j in range(OLD_JOBS) if j % 10 != 9]
OLD_PENDING = [j for j in range(OLD_JOBS) if j % 10 == 9]


async def load_old_jobs(pool: asyncpg.Pool, count: int = OLD_JOBS) -> None:
    """Jobs created and finished in January 2026 (the bench data set's format)."""
    await pool.execute(LOAD, 0, count, 5)


async def catch_up(pool: asyncpg.Pool, dsn: str) -> None:
    await projections.ProjectionRunner(pool, dsn).run_until_caught_up()


async def archived_streams(pool: asyncpg.Pool) -> set[str]:
    rows = await pool.fetch("SELECT DISTINCT stream_id FROM jobtrail.events_archive")
    return {row["stream_id"] for row in rows}


def settings(db_dsn: str, **values: Any) -> jobstore.Settings:
    return jobstore.Settings(database_url=db_dsn, **values)


async def test_a_run_archives_old_finished_jobs_in_batches_and_never_unfinished_ones(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    await load_old_jobs(pool)
    fresh = await jobstore.Dispatcher(store).enqueue("cleanup-old-data", {"retention": 30})
    await jobstore.Dispatcher(store).update_job_execution(fresh, {"status": "processing"})
    await jobstore.Dispatcher(store).update_job_execution(fresh, {"status": "completed"})
    await catch_up(pool, db_dsn)
    runner = retention.Retention(store, db_dsn, settings(db_dsn), pace=retention.Pace(batch_jobs=4))

    report = await runner.run_once()

    assert report.archived_jobs == len(OLD_FINISHED) and report.errors == []
    assert await archived_streams(pool) == {f"job-{bench_job_id(j)}" for j in OLD_FINISHED}
    for j in OLD_PENDING:  # unfinished, however old: still in the log
        assert len(await store.read_stream(f"job-{bench_job_id(j)}")) == 1
    assert len(await store.read_stream(f"job-{fresh}")) == 3, "finished within 30 days: kept"
    run = await pool.fetchrow("SELECT * FROM jobtrail.retention_runs")
    assert run is not None
    assert run["archived_jobs"] == len(OLD_FINISHED) and run["finished_at"] is not None
    assert run["next_run_at"] > datetime.now(UTC) + timedelta(minutes=59)
    await catch_up(pool, db_dsn)
    status = await retention.status(pool, settings(db_dsn))
    assert (status.jobs, status.unfinished_jobs, status.due_jobs) == (3, 2, 0)
    assert status.archived_events == 31 * 2 - 2  # 20 jobs' 62 events less 2 pending ones
    assert status.next_run_at == run["next_run_at"]


async def test_retention_days_zero_archives_nothing(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    await load_old_jobs(pool)
    await catch_up(pool, db_dsn)
    report = await retention.Retention(store, db_dsn, settings(db_dsn, retention_days=0)).run_once()
    assert report.archived_jobs == 0
    assert await archived_streams(pool) == set()


@contextlib.asynccontextmanager
async def host(db_dsn: str, **values: Any) -> AsyncIterator[web.Application]:
    """A host as `jobtrail serve` builds it (retention registered), without QStash."""
    config = settings(db_dsn, **values)
    options = HostOptions(
        relay=False,
        notifier=False,
        sweeper=False,
        dashboard=False,
        extra_background=(retention.schedule,) if retention.enabled(config) else (),
    )
    runner = web.AppRunner(make_app(config, options=options, dsn=db_dsn))
    await runner.setup()
    try:
        yield runner.app
    finally:
        await runner.cleanup()


async def wait_for(condition: Any, what: str, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.1)


async def test_hosts_archive_old_finished_jobs_by_themselves_one_host_at_a_time(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    await load_old_jobs(pool)
    expected = {f"job-{bench_job_id(j)}" for j in OLD_FINISHED}

    async def archived_all() -> bool:
        return await archived_streams(pool) == expected

    async def run_recorded() -> bool:
        count = await pool.fetchval(
            "SELECT count(*) FROM jobtrail.retention_runs WHERE finished_at IS NOT NULL"
        )
        return bool(count)

    async with host(db_dsn, retention_days=30), host(db_dsn, retention_days=30):
        await wait_for(archived_all, "old finished jobs archived")
        await wait_for(run_recorded, "the run recorded")
        runs = await pool.fetch("SELECT host, archived_jobs FROM jobtrail.retention_runs")
    assert len(runs) == 1, "one host ran the schedule; the other waited for the role"
    for j in OLD_PENDING:
        events = await pool.fetchval(
            "SELECT count(*) FROM jobtrail.events WHERE stream_id = $1", f"job-{bench_job_id(j)}"
        )
        assert events == 1


def test_serve_runs_the_schedule_only_when_retention_is_asked_for(db_dsn: str) -> None:
    from workers.cli.serve import _options

    def registered(**values: Any) -> bool:
        options = _options(settings(db_dsn, **values), listen_host="127.0.0.1")
        return retention.schedule in options.extra_background

    assert registered()  # the default: 30 days
    assert not registered(retention_days=0)
    assert registered(retention_days=0, export_keep_days=7)


async def test_the_schedule_resumes_where_the_database_says(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """A run is not repeated before its next_run_at, whichever host (or restart) leads."""
    await load_old_jobs(pool)
    await catch_up(pool, db_dsn)
    now = datetime.now(UTC)
    clock = [now]
    runner = retention.Retention(
        store, db_dsn, settings(db_dsn, retention_interval_seconds=3600), clock=lambda: clock[0]
    )
    await runner.run_once()
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(0.5)  # leads at once, then waits for next_run_at: no new run
        assert await pool.fetchval("SELECT count(*) FROM jobtrail.retention_runs") == 1
        clock[0] = now + timedelta(hours=1, seconds=1)

        async def second_run() -> bool:
            return bool(await pool.fetchval("SELECT count(*) = 2 FROM jobtrail.retention_runs"))

        await wait_for(second_run, "the next run at its time", within=20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_cleanup_old_data_uses_the_same_archiving(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str, status: str
) -> None:
    dispatcher = jobstore.Dispatcher(store)
    job = await dispatcher.enqueue("cleanup-old-data", {"retention": 1})
    if status != "cancelled":
        await dispatcher.update_job_execution(job, {"status": "processing"})
    await dispatcher.update_job_execution(job, {"status": status, "error": "x"})
    await catch_up(pool, db_dsn)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert await retention.archive_finished(store, tomorrow, 1) == 1
    assert await archived_streams(pool) == {f"job-{job}"}


async def _pauses_archiving_old_jobs(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str, pace: retention.Pace
) -> list[float]:
    """Archive the old finished jobs at ``pace``; the pauses it asked for, in order."""
    await load_old_jobs(pool)
    await catch_up(pool, db_dsn)
    pauses: list[float] = []

    async def recorded(seconds: float) -> None:
        pauses.append(seconds)

    archived = await retention.archive_finished(store, datetime.now(UTC), 30, pace, sleep=recorded)
    assert archived == len(OLD_FINISHED)
    return pauses


async def test_archiving_pauses_after_each_batch_until_its_wal_is_paid_for(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """A batch that wrote W bytes of WAL is followed by a pause of W / budget (less its own
    time): with a budget of 1 kB/s, every batch's pause is seconds long."""
    slow = retention.Pace(batch_jobs=6, wal_mb_per_s=0.001)
    pauses = await _pauses_archiving_old_jobs(store, pool, db_dsn, slow)
    assert len(pauses) == 3, "one pause after each full batch of 6 (18 finished jobs: 6, 6, 6)"
    assert all(p > 1.0 for p in pauses), pauses  # each batch writes kilobytes of WAL


async def test_archiving_does_not_pause_within_its_wal_budget(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    fast = retention.Pace(batch_jobs=6, wal_mb_per_s=10_000)
    assert await _pauses_archiving_old_jobs(store, pool, db_dsn, fast) == [0.0, 0.0, 0.0]


def test_the_pace_comes_from_the_settings_and_refuses_what_cannot_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBTRAIL_ARCHIVE_BATCH_JOBS", "250")
    monkeypatch.setenv("JOBTRAIL_ARCHIVE_WAL_MB_PER_S", "2.5")
    pace = retention.Pace.from_settings(jobstore.Settings())
    assert pace == retention.Pace(250, 2.5)
    assert pace.pause_after(5_000_000, 1.0) == pytest.approx(1.0), "5 MB: 2 s, the batch took 1"
    assert pace.pause_after(1_000_000, 1.0) == 0.0, "a slow batch paid for its WAL already"
    for name, value in [
        ("JOBTRAIL_ARCHIVE_WAL_MB_PER_S", "0"),
        ("JOBTRAIL_ARCHIVE_WAL_MB_PER_S", "fast"),
        ("JOBTRAIL_ARCHIVE_BATCH_JOBS", "0"),
    ]:
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(ValueError, match=name):
                jobstore.Settings()
    with pytest.raises(ValueError, match="wal_mb_per_s=0: use a number above 0"):
        retention.Pace(wal_mb_per_s=0)
