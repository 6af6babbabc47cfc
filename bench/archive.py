"""Retention at scale: archiving old jobs out of a large log while jobs keep coming in.

    python bench/archive.py [--events 10000000] [--archive-jobs 1000000]

1. Loads ``--events`` job events into a scratch database (set-based SQL, the log's real
   format: the same loader and job mix as ``bench/projections.py``, jobs created two
   seconds apart from 2026-01-01 on) and rebuilds the job view archiving reads.  The
   loaded events get a placeholder hash: the hash-chain trigger (sql/0026, a sha256 per
   row in PL/pgSQL) would make the load 4-5 times slower, and no chain is verified here;
   it is disabled for the load only, so every append the bench measures is chained.
2. Appends jobs at a steady pace (``--rate`` per second, one ``EventStore.append`` each,
   the enqueue path) with the projection runner following, for ``--seconds``: the append
   latency without archiving (``append_p99_ms``).
3. Archives the ``--archive-jobs`` oldest finished jobs with the retention schedule's own
   code (``Retention.archive``: bounded batches of ``--batch`` jobs) while the same
   appends go on: ``archive_events_per_s``, the append latency meanwhile
   (``append_p99_during_archive_ms``) and the longest archiving transaction
   (``archive_batch_max_ms``: how long one batch held its streams' locks; appends to
   other streams never wait for them), and how often an append was seen waiting on a
   lock while archiving ran (``append_lock_wait_samples_during_archive``, sampled every
   10 ms from ``pg_stat_activity``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jobstore
import projections
from bench.common import Timer, bench_line, percentile, scratch_database
from bench.projections import EVENTS_PER_10_JOBS, load
from jobstore import job_events
from jobstore.options import DispatchOptions
from projections import catalog
from workers import retention

VIEW = retention.VIEW
BORN = datetime(2026, 1, 1, tzinfo=UTC)  # the loader's first job; one job every 2 s


# For the load only (a scratch database the bench owns): see the module's docstring.
UNCHAINED = """
ALTER TABLE jobtrail.events DISABLE TRIGGER events_chain_hash;
ALTER TABLE jobtrail.events ALTER COLUMN hash SET DEFAULT sha256('bench placeholder');
"""
CHAINED = """
ALTER TABLE jobtrail.events ALTER COLUMN hash DROP DEFAULT;
ALTER TABLE jobtrail.events ENABLE TRIGGER events_chain_hash;
"""


def dispatched() -> job_events.JobDispatched:
    """A new job's first event, as enqueue records it."""
    return job_events.JobDispatched(
        job_id=str(uuid.uuid4()),
        dispatch=1,
        job_type="send-email",
        payload={"template": "welcome", "to": "ada@example.com", "data": {"n": 1}},
        metadata={"user_id": 7, "organization_id": 3},
        options=DispatchOptions(retries=3, timeout=30),
        source="api",
    )


class Appender:
    """Appends one new job per tick at a steady rate; records each append's latency."""

    def __init__(self, store: jobstore.EventStore, rate: float) -> None:
        self.store, self.rate = store, rate
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval, start, n = 1.0 / self.rate, loop.time(), 0
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                n += 1
                await asyncio.sleep(max(0.0, start + n * interval - loop.time()))
                task = asyncio.create_task(self._one())
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self) -> None:
        event = dispatched()
        began = time.perf_counter()
        await self.store.append(f"job-{event.job_id}", [event], jobstore.NO_STREAM)
        self.samples.append((time.perf_counter() - began) * 1000)


@contextlib.asynccontextmanager
async def appending(store: jobstore.EventStore, rate: float) -> AsyncIterator[Appender]:
    appender = Appender(store, rate)
    task = asyncio.create_task(appender.run())
    try:
        yield appender
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class LockWatch:
    """Samples the server every 10 ms: appends waiting on a lock (a heavyweight or an
    advisory one), the only way archiving could hold the append path rather than share
    the machine with it."""

    QUERY = """
        SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND query ILIKE '%append_events%'"""

    def __init__(self, pool: jobstore.EventStore) -> None:
        self.store = pool
        self.samples = 0
        self.waiting = 0

    async def run(self) -> None:
        async with self.store.pool.acquire() as conn:
            while True:
                self.samples += 1
                self.waiting += bool(await conn.fetchval(self.QUERY))
                await asyncio.sleep(0.01)


class TimedStore(jobstore.EventStore):
    """The event store, timing each archiving transaction."""

    batches: list[float]

    async def archive_streams(
        self, stream_ids: Sequence[str], finished_before: datetime, retention_days: int
    ) -> list[str]:
        began = time.perf_counter()
        moved = await super().archive_streams(stream_ids, finished_before, retention_days)
        self.batches.append((time.perf_counter() - began) * 1000)
        return moved


def report(name: str, samples: list[float]) -> None:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(
        f"{name}: {len(samples):,} appends, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(samples):.1f} ms",
        flush=True,
    )


async def main(
    events: int,
    archive_jobs: int,
    rate: float,
    seconds: float,
    batch: int,
    pause: float,
    limit: float | None,
) -> None:
    jobs = events * 10 // EVENTS_PER_10_JOBS
    # Jobs 0 .. first_kept-1 hold archive_jobs finished ones (9 in 10 are finished).
    first_kept = min(jobs, -(-archive_jobs * 10 // 9) // 10 * 10)
    async with scratch_database() as dsn:
        pool = await jobstore.create_pool(dsn, min_size=2, max_size=12)
        try:
            timer = Timer()
            await pool.execute(UNCHAINED)
            try:
                written = await load(pool, 0, jobs)
            finally:
                await pool.execute(CHAINED)
            took = timer.elapsed
            print(
                f"loaded {written:,} events ({jobs:,} jobs) in {took:.0f} s "
                f"({written / took:,.0f} events/s)",
                flush=True,
            )
            await pool.execute("ANALYZE jobtrail.events")
            timer = Timer()
            with projections.relaxed_gc():
                rebuilt = await projections.rebuild(pool, dsn, [VIEW])
            print(f"rebuilt {VIEW}: {rebuilt.events:,} events in {timer.elapsed:.0f} s", flush=True)
            await pool.execute(f"ANALYZE jobtrail.{VIEW}")
            chosen = [p for p in catalog.builtin_projections() if p.name == VIEW]
            # Each party on a pool of its own, as on separate hosts: a slow append must not
            # make archiving wait for a connection, nor the other way round.
            runner = projections.ProjectionRunner(pool, dsn, chosen, idle_poll=0.2)
            following = asyncio.create_task(runner.run())
            appends = jobstore.EventStore(await jobstore.create_pool(dsn, max_size=40))
            store = TimedStore(await jobstore.create_pool(dsn, min_size=1, max_size=2))
            store.batches = []
            try:
                async with appending(appends, rate):  # warm up: connections, caches
                    await asyncio.sleep(5)
                async with appending(appends, rate) as quiet:
                    await asyncio.sleep(seconds)
                report("appends without archiving", quiet.samples)
                cutoff = BORN + timedelta(seconds=2 * first_kept)
                settings = jobstore.Settings(database_url=dsn, retention_days=30)
                archiver = retention.Retention(
                    store,
                    dsn,
                    settings,
                    clock=lambda: cutoff + timedelta(days=30),
                    batch=batch,
                    pause=pause,
                )
                before = await pool.fetchval("SELECT count(*) FROM jobtrail.events_archive")
                watch = LockWatch(jobstore.EventStore(pool))
                watching = asyncio.create_task(watch.run())
                async with appending(appends, rate) as busy:
                    timer = Timer()
                    work = asyncio.create_task(archiver.archive())
                    done, _ = await asyncio.wait({work}, timeout=limit)
                    took = timer.elapsed
                    if work in done:
                        archived = work.result()
                    else:  # out of time: stop (the batch in flight rolls back), count what moved
                        work.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await work
                        archived = await pool.fetchval(
                            "SELECT count(DISTINCT stream_id) FROM jobtrail.events_archive"
                        )
                        print(f"stopped after {took:.0f} s (--archive-seconds)", flush=True)
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
                moved = await pool.fetchval("SELECT count(*) FROM jobtrail.events_archive")
                moved -= before
                print(
                    f"archived {archived:,} jobs ({moved:,} events) in {took:.1f} s, "
                    f"{len(store.batches):,} batches of up to {batch} jobs",
                    flush=True,
                )
                report("appends while archiving", busy.samples)
                print(
                    f"appends waiting on a lock: {watch.waiting} of {watch.samples} samples "
                    "(every 10 ms) during archiving",
                    flush=True,
                )
            finally:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
                await appends.pool.close()
                await store.pool.close()
        finally:
            await pool.close()
    bench_line("archive_events_per_s", moved / took, "events/s")
    bench_line("archive_jobs", archived, "jobs")
    bench_line("archive_batch_max_ms", max(store.batches), "ms")
    bench_line("archive_batch_p99_ms", percentile(store.batches, 99), "ms")
    bench_line("append_p99_ms", percentile(quiet.samples, 99), "ms")
    bench_line("append_p99_during_archive_ms", percentile(busy.samples, 99), "ms")
    bench_line("append_max_during_archive_ms", max(busy.samples), "ms")
    bench_line("append_lock_wait_samples_during_archive", watch.waiting, "samples")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--archive-jobs", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0, help="appends per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="baseline duration")
    parser.add_argument("--batch", type=int, default=retention.BATCH_JOBS)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between batches")
    parser.add_argument(
        "--archive-seconds", type=float, default=None, help="stop archiving after this long"
    )
    args = parser.parse_args()
    asyncio.run(
        main(
            args.events,
            args.archive_jobs,
            args.rate,
            args.seconds,
            args.batch,
            args.pause,
            args.archive_seconds,
        )
    )
