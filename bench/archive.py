"""Retention at scale: archiving old jobs out of a large log while jobs keep coming in.

    python bench/archive.py [--events 10000000] [--archive-jobs 1000000]
        [--batch 100] [--wal-mb-per-s 8] [--archive-seconds 720] [--keep-loaded NAME]

1. Loads ``--events`` job events into a scratch database (set-based SQL, the log's real
   format: the same loader and job mix as ``bench/projections.py``, jobs created two
   seconds apart from 2026-01-01 on), rebuilds the job view archiving reads and vacuums
   both (an old log's pages are all-visible).  The loaded events get a placeholder hash
   (``jobtrail.event_hashes``, the chain's cursor moved past them): chaining ten million
   events (sql/0045, ~8 µs each) would only lengthen the load, and no chain is verified
   here; every event appended while the bench measures is chained as in production (by
   archiving, which chains what is pending before it moves streams).  With
   ``--keep-loaded NAME`` the loaded database is kept and later runs with as many jobs
   clone it instead of loading.
2. Appends jobs at a steady pace (``--rate`` per second, one ``EventStore.append`` each,
   the enqueue path) with the projection runner following, for ``--seconds``: the append
   latency without archiving (``append_p99_without_archive_ms``).
3. Archives the ``--archive-jobs`` oldest finished jobs with the retention schedule's own
   code (``Retention.archive``: batches of ``--batch`` jobs paced to ``--wal-mb-per-s``,
   as ``JOBTRAIL_ARCHIVE_BATCH_JOBS`` / ``JOBTRAIL_ARCHIVE_WAL_MB_PER_S`` set them) while
   the same appends go on: ``archive_events_per_s``, the append latency meanwhile
   (``append_p99_during_archive_ms``), the longest archiving transaction
   (``archive_batch_max_ms``), and how often an append was seen waiting on a lock
   (``append_lock_wait_samples_during_archive``).

For each phase it also prints where the time goes: every active backend of the server
sampled every 10 ms from ``pg_stat_activity`` by role (append, archive, projection, WAL
writer, checkpointer, autovacuum, other databases) and wait event; the WAL written (full
page images apart), checkpoints, disk writes and CPU; the statements that wrote the most
WAL (``pg_stat_statements``, when the server loads it); how late this process's event
loop ran.  ``--async-appends`` (a diagnosis) lets appends commit without waiting for
their WAL flush: what archiving still costs them then is CPU, not the WAL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jobstore
import projections
from bench.common import Timer, bench_line, percentile, quiet_logs, scratch_database
from bench.projections import EVENTS_PER_10_JOBS, load
from jobstore import job_events
from jobstore.options import DispatchOptions
from projections import catalog
from workers import retention

VIEW = retention.VIEW
BORN = datetime(2026, 1, 1, tzinfo=UTC)  # the loader's first job; one job every 2 s
ARCHIVE_FUNCTION = "jobtrail.archive_streams(text[], timestamptz, integer)"
_PROCONFIG = "SELECT array_to_string(proconfig, ', ') FROM pg_proc WHERE oid = $1::regprocedure"


# For the load only (a scratch database the bench owns): see the module's docstring.
PLACEHOLDER_CHAIN = """
INSERT INTO jobtrail.event_hashes (position, hash)
SELECT e.position, sha256('bench placeholder') FROM jobtrail.events e
 WHERE NOT EXISTS (SELECT 1 FROM jobtrail.event_hashes h WHERE h.position = e.position);
UPDATE jobtrail.chain_progress
   SET (cursor_xid, cursor_position) = (SELECT e.xid, e.position FROM jobtrail.events e
                                         ORDER BY e.xid DESC, e.position DESC LIMIT 1);
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


class Running(Protocol):
    """Something with a ``run()`` that goes on until cancelled."""

    async def run(self) -> None: ...


R = TypeVar("R", bound=Running)


@contextlib.asynccontextmanager
async def running(thing: R) -> AsyncIterator[R]:
    """``thing.run()`` in the background for the block; cancelled at its end."""
    task = asyncio.create_task(thing.run())
    try:
        yield thing
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class LoopLag:
    """How late this process's event loop wakes a 5 ms sleep (ms): time an append spends
    waiting for this Python process, not for the database."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(0.005)
            self.samples.append((loop.time() - began - 0.005) * 1000)


class Sampler:
    """Samples ``pg_stat_activity`` every 10 ms: what each active backend of the server is
    doing (appends, archiving, the projection, autovacuum, WAL writer, checkpointer, other
    databases), by wait event ("CPU" when it waits on none).  An append waiting on a lock
    (heavyweight or advisory) is the only way archiving could hold the append path rather
    than share the machine with it; the other waits say where the time goes."""

    QUERY = """
        SELECT CASE WHEN a.backend_type <> 'client backend' THEN a.backend_type
                    WHEN a.datname IS DISTINCT FROM current_database() THEN 'other database'
                    WHEN a.query ILIKE '%append_events%' THEN 'append'
                    WHEN a.query ILIKE '%archive_streams%' THEN 'archive'
                    WHEN a.query ILIKE '%checkpoint%' THEN 'projection'
                    ELSE 'other' END AS who,
               coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU') AS what
          FROM pg_stat_activity a
         WHERE a.pid <> pg_backend_pid()
           AND (a.state = 'active' OR a.backend_type <> 'client backend')
           AND coalesce(a.wait_event_type, '') NOT IN ('Activity', 'Client', 'Extension')"""

    def __init__(self, store: jobstore.EventStore) -> None:
        self.store = store
        self.samples = 0
        self.lock_waits = 0
        self.seen: Counter[tuple[str, str]] = Counter()
        self.lag = LoopLag()

    async def run(self) -> None:
        lag = asyncio.create_task(self.lag.run())
        try:
            await self._sample()
        finally:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag

    async def _sample(self) -> None:
        async with self.store.pool.acquire() as conn:
            while True:
                rows = await conn.fetch(self.QUERY)
                self.samples += 1
                self.seen.update((r["who"], r["what"]) for r in rows)
                self.lock_waits += any(
                    r["who"] == "append" and r["what"].startswith("Lock:") for r in rows
                )
                await asyncio.sleep(0.01)

    def report(self, phase: str) -> None:
        """The most frequent (who, wait) pairs, as a share of the samples."""
        lag = self.lag.samples
        print(
            f"{phase}: this process's event loop late by p50 {percentile(lag, 50):.2f} ms, "
            f"p99 {percentile(lag, 99):.2f} ms, max {max(lag):.1f} ms",
            flush=True,
        )
        print(f"{phase}: backends seen in {self.samples:,} samples (10 ms apart):", flush=True)
        for (who, what), n in self.seen.most_common(18):
            print(f"  {who:>20} {what:<28} {n:>7,} {100 * n / self.samples:6.1f} %")


class ServerStats:
    """The server's WAL, checkpoint and disk counters at one moment (to diff two)."""

    WAL = """
        SELECT w.wal_records, w.wal_fpi, w.wal_bytes::bigint AS wal_bytes,
               w.wal_buffers_full, w.wal_write, w.wal_sync,
               b.checkpoints_timed + b.checkpoints_req AS checkpoints,
               b.buffers_checkpoint, b.buffers_backend
          FROM pg_stat_wal w, pg_stat_bgwriter b"""
    STATEMENTS = """
        SELECT queryid, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query, calls,
               total_exec_time, max_exec_time, wal_bytes::bigint AS wal_bytes, wal_fpi,
               shared_blks_read, shared_blks_hit
          FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"""

    def __init__(
        self,
        at: float,
        wal: dict[str, int],
        statements: dict[int, dict[str, Any]],
        disk: tuple[int, int],
        cpu: tuple[int, int],
    ) -> None:
        self.at, self.wal, self.statements = at, wal, statements
        self.disk, self.cpu = disk, cpu

    @classmethod
    async def take(cls, pool: asyncpg.Pool) -> ServerStats:
        row = await pool.fetchrow(cls.WAL)
        assert row is not None
        statements: dict[int, dict[str, Any]] = {}
        with contextlib.suppress(asyncpg.PostgresError):  # the server does not load it
            statements = {r["queryid"]: dict(r) for r in await pool.fetch(cls.STATEMENTS)}
        return cls(time.perf_counter(), dict(row), statements, _disk_writes(), _cpu())

    def report(self, phase: str, before: ServerStats) -> None:
        """WAL, checkpoints and disk writes between ``before`` and now; the statements
        that wrote the most WAL."""
        took = self.at - before.at
        d = {k: self.wal[k] - before.wal[k] for k in self.wal}
        sectors, ms = (a - b for a, b in zip(self.disk, before.disk, strict=True))
        busy, total = (a - b for a, b in zip(self.cpu, before.cpu, strict=True))
        print(
            f"{phase}: WAL {d['wal_bytes'] / 1e6:,.0f} MB ({d['wal_bytes'] / 1e6 / took:.1f} MB/s,"
            f" {d['wal_fpi']:,} full-page images of {d['wal_records']:,} records), "
            f"{d['wal_buffers_full']:,} writes for full WAL buffers, {d['wal_sync']:,} WAL syncs,"
            f" {d['checkpoints']} checkpoints ({d['buffers_checkpoint']:,} buffers), "
            f"disk: {sectors * 512 / 1e6 / took:.1f} MB/s written, busy writing "
            f"{ms / 10 / took:.0f} % of the time; CPU {100 * busy / max(total, 1):.0f} % busy "
            f"(all cores), load average {Path('/proc/loadavg').read_text().split()[0]}",
            flush=True,
        )
        changed = []
        for qid, now in self.statements.items():
            then = before.statements.get(qid, {})
            wal = now["wal_bytes"] - then.get("wal_bytes", 0)
            calls = now["calls"] - then.get("calls", 0)
            if calls:
                spent = now["total_exec_time"] - then.get("total_exec_time", 0.0)
                fpi = now["wal_fpi"] - then.get("wal_fpi", 0)
                read = now["shared_blks_read"] - then.get("shared_blks_read", 0)
                top = now["max_exec_time"]
                changed.append((wal, calls, spent, top, fpi, read, now["query"]))
        for wal, calls, spent, top, fpi, read, query in sorted(changed, reverse=True)[:6]:
            print(
                f"  {wal / 1e6:9,.1f} MB WAL ({fpi:,} FPI) {calls:>8,} calls "
                f"{spent / calls:8.2f} ms/call (max {top:.0f} ever) {read:>9,} blocks read  "
                f"{query}",
                flush=True,
            )


def _cpu() -> tuple[int, int]:
    """Jiffies the machine's cores were busy, and in all (``/proc/stat``)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _disk_writes() -> tuple[int, int]:
    """Sectors written and ms spent writing, all block devices (``/proc/diskstats``)."""
    sectors = ms = 0
    with contextlib.suppress(OSError):
        disks = {d.name for d in Path("/sys/block").iterdir()}
        for line in Path("/proc/diskstats").read_text().splitlines():
            f = line.split()
            if f[2] in disks and not f[2].startswith(("loop", "ram", "dm-", "zram")):
                sectors, ms = sectors + int(f[9]), ms + int(f[10])
    return sectors, ms


class TimedStore(jobstore.EventStore):
    """The event store, timing each archiving transaction and the server's WAL around it."""

    batches: list[float]
    wal: list[float]

    async def archive_streams(
        self, stream_ids: Sequence[str], finished_before: datetime, retention_days: int
    ) -> list[str]:
        lsn = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"
        start = await self.pool.fetchval(lsn)
        began = time.perf_counter()
        moved = await super().archive_streams(stream_ids, finished_before, retention_days)
        self.batches.append((time.perf_counter() - began) * 1000)
        self.wal.append(float(await self.pool.fetchval(lsn) - start))
        return moved


def report(name: str, samples: list[float]) -> None:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(
        f"{name}: {len(samples):,} appends, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(samples):.1f} ms",
        flush=True,
    )


async def prepare(dsn: str, jobs: int) -> None:
    """Load ``jobs`` jobs into the log at ``dsn``, rebuild the job view, vacuum both."""
    pool = await jobstore.create_pool(dsn, min_size=1, max_size=4)
    try:
        timer = Timer()
        written = await load(pool, 0, jobs)
        await pool.execute(PLACEHOLDER_CHAIN)
        took = timer.elapsed
        print(
            f"loaded {written:,} events ({jobs:,} jobs) in {took:.0f} s "
            f"({written / took:,.0f} events/s)",
            flush=True,
        )
        timer = Timer()
        with projections.relaxed_gc():
            rebuilt = await projections.rebuild(pool, dsn, [VIEW])
        print(f"rebuilt {VIEW}: {rebuilt.events:,} events in {timer.elapsed:.0f} s", flush=True)
        # An old log has been vacuumed long since (its pages all-visible): so is this one.
        timer = Timer()
        await pool.execute(f"VACUUM (ANALYZE) jobtrail.events, jobtrail.{VIEW}", timeout=3600)
        print(f"vacuumed in {timer.elapsed:.0f} s", flush=True)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def loaded_database(jobs: int, keep: str | None) -> AsyncIterator[str]:
    """A scratch database holding the loaded log and the rebuilt view; dropped after.

    With ``keep``, the loaded database stays under that name and the next runs with as
    many jobs clone it (``CREATE DATABASE … TEMPLATE``, a file copy) instead of loading.
    """
    if keep is None:
        async with scratch_database() as dsn:
            await prepare(dsn, jobs)
            yield dsn
        return
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", keep):
        raise SystemExit(f"--keep-loaded {keep!r}: use a plain database name ([a-z0-9_])")
    quiet_logs()
    server = jobstore.Settings().database_url
    if server is None:
        raise SystemExit("--keep-loaded needs DATABASE_URL (a server that keeps databases)")
    admin = await asyncpg.connect(server)
    marker = f"bench/archive.py: {jobs} jobs loaded"
    try:
        found = await admin.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            keep,
        )
        if found != marker:
            await admin.execute(f'DROP DATABASE IF EXISTS "{keep}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{keep}"')
            kept = urlsplit(server)._replace(path=f"/{keep}").geturl()
            await jobstore.migrate(kept)
            await prepare(kept, jobs)
            await admin.execute(f"COMMENT ON DATABASE \"{keep}\" IS '{marker}'")
        name = f"jobtrail_bench_{uuid.uuid4().hex[:8]}"
        timer = Timer()
        await admin.execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{keep}" STRATEGY FILE_COPY', timeout=3600
        )
        print(f"cloned {keep} in {timer.elapsed:.0f} s", flush=True)
        try:
            dsn = urlsplit(server)._replace(path=f"/{name}").geturl()
            await jobstore.migrate(dsn)  # migrations newer than the kept copy
            yield dsn
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def main(
    events: int,
    archive_jobs: int,
    rate: float,
    seconds: float,
    limit: float | None,
    keep: str | None,
    pace: retention.Pace,
    async_appends: bool = False,
    wal_compression: str | None = None,
) -> None:
    jobs = events * 10 // EVENTS_PER_10_JOBS
    # Jobs 0 .. first_kept-1 hold archive_jobs finished ones (9 in 10 are finished).
    first_kept = min(jobs, -(-archive_jobs * 10 // 9) // 10 * 10)
    async with loaded_database(jobs, keep) as dsn:
        pool = await jobstore.create_pool(dsn, min_size=2, max_size=12)
        try:
            with contextlib.suppress(asyncpg.PostgresError):  # only the figures need it
                await pool.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            if wal_compression is not None:  # a comparison: archiving's WAL compressed or not
                await pool.execute(
                    f"ALTER FUNCTION {ARCHIVE_FUNCTION} SET wal_compression = '{wal_compression}'"
                )
            print(
                "archive_streams runs with "
                + (await pool.fetchval(_PROCONFIG, ARCHIVE_FUNCTION) or "the server's settings"),
                flush=True,
            )
            chosen = [p for p in catalog.builtin_projections() if p.name == VIEW]
            # Each party on a pool of its own, as on separate hosts: a slow append must not
            # make archiving wait for a connection, nor the other way round.
            runner = projections.ProjectionRunner(pool, dsn, chosen, idle_poll=0.2)
            following = asyncio.create_task(runner.run())
            # --async-appends (a diagnosis): appends do not wait for their WAL flush, so what
            # archiving still costs them is CPU and locks, not the WAL.
            appends_dsn = f"{dsn}?synchronous_commit=off" if async_appends else dsn
            appends = jobstore.EventStore(await jobstore.create_pool(appends_dsn, max_size=40))
            store = TimedStore(await jobstore.create_pool(dsn, min_size=1, max_size=2))
            store.batches, store.wal = [], []
            watcher = jobstore.EventStore(pool)
            try:
                async with running(Appender(appends, rate)):  # warm up: connections, caches
                    await asyncio.sleep(5)
                before = await ServerStats.take(pool)
                async with (
                    running(Appender(appends, rate)) as quiet,
                    running(Sampler(watcher)) as idle,
                ):
                    await asyncio.sleep(seconds)
                report("appends without archiving", quiet.samples)
                (await ServerStats.take(pool)).report("without archiving", before)
                idle.report("without archiving")
                cutoff = BORN + timedelta(seconds=2 * first_kept)
                settings = jobstore.Settings(database_url=dsn, retention_days=30)
                archiver = retention.Retention(
                    store,
                    dsn,
                    settings,
                    clock=lambda: cutoff + timedelta(days=30),
                    pace=pace,
                )
                moved_before = await pool.fetchval("SELECT count(*) FROM jobtrail.events_archive")
                before = await ServerStats.take(pool)
                async with (
                    running(Appender(appends, rate)) as busy,
                    running(Sampler(watcher)) as watch,
                ):
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
                after = await ServerStats.take(pool)
                moved = await pool.fetchval("SELECT count(*) FROM jobtrail.events_archive")
                moved -= moved_before
                print(
                    f"archived {archived:,} jobs ({moved:,} events) in {took:.1f} s, "
                    f"{len(store.batches):,} batches (server WAL per batch: p50 "
                    f"{percentile(store.wal, 50) / 1e6:.1f} MB, max {max(store.wal) / 1e6:.1f} MB)",
                    flush=True,
                )
                report("appends while archiving", busy.samples)
                after.report("while archiving", before)
                watch.report("while archiving")
                print(
                    f"appends waiting on a lock: {watch.lock_waits} of {watch.samples} samples "
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
    bench_line("archive_seconds", took, "s")
    bench_line("archive_batch_max_ms", max(store.batches), "ms")
    bench_line("archive_batch_p99_ms", percentile(store.batches, 99), "ms")
    bench_line("append_p99_without_archive_ms", percentile(quiet.samples, 99), "ms")
    bench_line("append_p99_during_archive_ms", percentile(busy.samples, 99), "ms")
    bench_line("append_p50_without_archive_ms", percentile(quiet.samples, 50), "ms")
    bench_line("append_p50_during_archive_ms", percentile(busy.samples, 50), "ms")
    bench_line("append_max_during_archive_ms", max(busy.samples), "ms")
    bench_line("append_lock_wait_samples_during_archive", watch.lock_waits, "samples")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--archive-jobs", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0, help="appends per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="baseline duration")
    parser.add_argument(
        "--batch", type=int, default=retention.BATCH_JOBS, help="JOBTRAIL_ARCHIVE_BATCH_JOBS"
    )
    parser.add_argument(
        "--wal-mb-per-s",
        type=float,
        default=retention.WAL_MB_PER_S,
        help="archiving's WAL budget (JOBTRAIL_ARCHIVE_WAL_MB_PER_S)",
    )
    parser.add_argument(
        "--archive-seconds", type=float, default=None, help="stop archiving after this long"
    )
    parser.add_argument(
        "--keep-loaded",
        metavar="NAME",
        help="keep the loaded log in database NAME and clone it in later runs",
    )
    parser.add_argument(
        "--archive-wal-compression",
        choices=["off", "pglz", "lz4", "zstd"],
        help="run archive_streams with this wal_compression (default: as migrated)",
    )
    parser.add_argument(
        "--async-appends",
        action="store_true",
        help="diagnosis: appends commit with synchronous_commit=off (is it the WAL flush?)",
    )
    args = parser.parse_args()
    asyncio.run(
        main(
            args.events,
            args.archive_jobs,
            args.rate,
            args.seconds,
            args.archive_seconds,
            args.keep_loaded,
            retention.Pace(args.batch, args.wal_mb_per_s),
            args.async_appends,
            args.archive_wal_compression,
        )
    )
