"""Projections: rebuild rate, read latency over a million jobs, and projection lag.

    python bench/projections.py [--events 1000000] [--jobs 1000000]

1. Loads ``--events`` job events into the log (set-based SQL; a realistic mix of
   completed, retried, failed and pending jobs) and rebuilds every view from them through
   the projection runner's rebuild: events/s.
2. Adds freshly dispatched jobs until the views hold ``--jobs`` jobs (the runner catches
   up on them as a host would: another figure), then times get-by-id and filtered list
   pages (p50/p99).
3. Runs the runner as a host would and enqueues jobs at a steady pace: the time from an
   enqueue's commit until every view has applied it (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jobstore
import projections
from bench.common import Timer, bench_line, percentile, scratch_database
from projections import checkpoint

EVENTS_PER_10_JOBS = 31  # 7 completed (3 events), 1 retried (5), 1 failed (4), 1 pending (1)
CHUNK_JOBS = 50_000

# Jobs $1 .. $2-1 as events, up to version $3 of each job's stream (1: just dispatched,
# 5: the whole mix): within each group of 500 jobs, all dispatches first, then all
# first starts, and so on, so a job's events sit near each other in the log, as they do
# when jobs flow.  created_at spreads over weeks (two seconds per job).
LOAD = """
WITH jobs AS (
    SELECT j, md5('bench-job-' || j)::uuid::text AS job_id, j % 10 AS shape,
           (ARRAY['send-email', 'process-webhook', 'process-stripe-webhook', 'export-data',
                  'generate-report', 'cleanup-old-data'])[1 + j % 6] AS job_type,
           timestamptz '2026-01-01' + j * interval '2 seconds' AS born
      FROM generate_series($1::bigint, $2::bigint - 1) AS j
), steps (low, high, version, step) AS (VALUES
    (0, 9, 1, 'dispatched'), (0, 8, 2, 'started'), (0, 6, 3, 'completed'),
    (7, 8, 3, 'attempt_failed'), (7, 7, 4, 'started_again'), (7, 7, 5, 'completed_again'),
    (8, 8, 4, 'failed')
)
INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data, recorded_at)
SELECT 'job-' || job_id, s.version,
       CASE s.step WHEN 'dispatched' THEN 'job.dispatched'
                   WHEN 'started' THEN 'job.started' WHEN 'started_again' THEN 'job.started'
                   WHEN 'completed' THEN 'job.completed'
                   WHEN 'completed_again' THEN 'job.completed'
                   WHEN 'attempt_failed' THEN 'job.attempt_failed'
                   ELSE 'job.failed' END,
       CASE WHEN s.step LIKE 'completed%' THEN 2 ELSE 1 END,
       CASE s.step
         WHEN 'dispatched' THEN json_build_object(
           'job_id', job_id, 'dispatch', 1, 'job_type', job_type,
           'payload', json_build_object('to', 'user' || j || '@example.com', 'n', j),
           'metadata', json_build_object('user_id', 1 + j % 1000,
                                         'organization_id', 1 + j % 50,
                                         'created_at', born),
           'options', json_build_object('retries', 3, 'timeout', 30),
           'source', 'api', 'reason', NULL)
         WHEN 'started' THEN json_build_object(
           'dispatch', 1, 'attempt', 1, 'message_id', 'msg_' || j, 'lease_until', 1.8e9)
         WHEN 'started_again' THEN json_build_object(
           'dispatch', 1, 'attempt', 2, 'message_id', 'msg_' || j, 'lease_until', 1.8e9)
         WHEN 'completed' THEN json_build_object(
           'dispatch', 1, 'attempt', 1, 'duration_seconds', (j % 997) / 100.0, 'result', NULL)
         WHEN 'completed_again' THEN json_build_object(
           'dispatch', 1, 'attempt', 2, 'duration_seconds', (j % 89) / 10.0, 'result', NULL)
         WHEN 'attempt_failed' THEN json_build_object(
           'dispatch', 1, 'attempt', 1, 'error_type', 'TimeoutError',
           'error_message', 'upstream ' || (j % 300) || ' timed out after 30 s',
           'traceback', NULL, 'will_retry', shape = 7, 'abandoned', false,
           'duration_seconds', 30.0)
         ELSE json_build_object(
           'dispatch', 1, 'attempt', 1, 'reason', 'retries exhausted',
           'error_type', 'TimeoutError',
           'error_message', 'upstream ' || (j % 300) || ' timed out after 30 s')
       END,
       born + s.version * interval '100 milliseconds'
  FROM jobs JOIN steps s ON jobs.shape BETWEEN s.low AND s.high AND s.version <= $3
 ORDER BY j / 500, s.version, j
"""


def job_id(j: int) -> str:
    """The id of bench job number ``j`` (as the loader derives it)."""
    return str(uuid.UUID(hashlib.md5(f"bench-job-{j}".encode()).hexdigest()))


async def load(pool: asyncpg.Pool, first: int, last: int, steps: int = 5) -> int:
    """Append the events of jobs ``first`` .. ``last - 1`` (their first ``steps`` each)."""
    written = 0
    for start in range(first, last, CHUNK_JOBS):
        end = min(start + CHUNK_JOBS, last)
        status = await pool.execute(LOAD, start, end, steps, timeout=600)
        written += int(status.split()[-1])
        print(f"  loaded jobs {end:,}/{last:,} ({written:,} events)", flush=True)
    return written


async def rebuild_rate(pool: asyncpg.Pool, dsn: str, events: int) -> float:
    """Events/s of a full rebuild of every view."""
    last = [0.0]

    def progress(position: int, head: int) -> None:
        if time.perf_counter() - last[0] > 5:
            last[0] = time.perf_counter()
            print(f"  rebuild at position {position:,}/{head:,}", flush=True)

    with projections.relaxed_gc():  # as `jobtrail projections rebuild` does
        result = await projections.rebuild(pool, dsn, progress=progress)
    print(f"rebuild: {result.events:,} events in {result.seconds:.1f} s", flush=True)
    return result.events_per_second


def timed_ms(samples: list[float], start: float) -> None:
    samples.append((time.perf_counter() - start) * 1000)


async def get_by_id(pool: asyncpg.Pool, jobs: int, count: int) -> list[float]:
    """Milliseconds per get_job_execution of a random job."""
    samples: list[float] = []
    rng = random.Random(1)
    for _ in range(count):
        target = job_id(rng.randrange(jobs))
        start = time.perf_counter()
        found = await projections.get_job_execution(pool, target)
        timed_ms(samples, start)
        assert found is not None
    return samples


def list_filters(rng: random.Random) -> list[dict[str, Any]]:
    """The filtered lists a dashboard asks for."""
    return [
        {"status": "failed"},
        {"status": "completed", "type": "send-email"},
        {"status": "retrying"},
        {"type": "export-data"},
        {"user_id": rng.randrange(1, 1001)},
        {"organization_id": rng.randrange(1, 51), "status": "pending"},
        {"error_contains": f"upstream {rng.randrange(300)} timed"},
        {"created_from": (day := _day(rng)), "created_to": day + timedelta(days=3)},
        {},
    ]


def _day(rng: random.Random) -> datetime:
    return datetime(2026, 1, 2, tzinfo=UTC) + timedelta(days=rng.randrange(20))


async def list_pages(pool: asyncpg.Pool, rounds: int) -> tuple[list[float], dict[str, float]]:
    """Milliseconds per filtered page of 50 (first pages and the page after them)."""
    samples: list[float] = []
    worst: dict[str, float] = {}
    rng = random.Random(2)
    for _ in range(rounds):
        for filters in list_filters(rng):
            start = time.perf_counter()
            page = await projections.list_job_executions(pool, limit=50, **filters)
            timed_ms(samples, start)
            if page.next_cursor:
                start = time.perf_counter()
                await projections.list_job_executions(
                    pool, limit=50, cursor=page.next_cursor, **filters
                )
                timed_ms(samples, start)
            key = ",".join(sorted(filters)) or "none"
            worst[key] = max(worst.get(key, 0.0), samples[-1])
    return samples, worst


async def lag(pool: asyncpg.Pool, dsn: str, jobs: int, rate: float) -> list[float]:
    """Milliseconds from an enqueue's return until every view applied it, jobs flowing."""
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    runner = projections.ProjectionRunner(pool, dsn)
    task = asyncio.create_task(runner.run())
    names = [p.name for p in projections.builtin_projections()]
    sent: list[tuple[int, float]] = []
    samples: list[float] = []
    try:
        await projections.wait_for_position(pool, await dispatcher.store.last_position(), 60)

        async def watch() -> None:
            done = 0
            while done < jobs:
                position = await checkpoint.min_position(pool, names)
                now = time.perf_counter()
                while done < len(sent) and sent[done][0] <= position:
                    samples.append((now - sent[done][1]) * 1000)
                    done += 1
                await asyncio.sleep(0.001)

        watcher = asyncio.create_task(watch())
        pace = Timer()
        for n in range(jobs):
            await asyncio.sleep(max(0.0, n / rate - pace.elapsed))
            enqueued = await dispatcher.enqueue_with_position(
                "cleanup-old-data", {"retention": 30}, {"user_id": 1}
            )
            assert enqueued.position is not None
            sent.append((enqueued.position, time.perf_counter()))
        await asyncio.wait_for(watcher, 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return samples


async def main(events: int, jobs: int, lag_jobs: int, rate: float) -> None:
    async with scratch_database() as dsn:
        pool = await jobstore.create_pool(dsn, min_size=4, max_size=8)
        try:
            first_jobs = events * 10 // EVENTS_PER_10_JOBS
            print(f"loading {first_jobs:,} jobs as ~{events:,} events", flush=True)
            loaded = await load(pool, 0, first_jobs)
            await pool.execute("ANALYZE jobtrail.events")
            print(f"rebuilding every view from {loaded:,} events", flush=True)
            rebuild = await rebuild_rate(pool, dsn, loaded)

            print(f"growing the views to {jobs:,} jobs (newly dispatched ones)", flush=True)
            await load(pool, first_jobs, jobs, steps=1)
            catch_up = Timer()
            applied = await projections.ProjectionRunner(
                pool, dsn, batch_size=5000
            ).run_until_caught_up()
            views = len(projections.builtin_projections())  # each one reads every event
            catch_up_rate = applied / views / catch_up.elapsed
            print(f"runner caught up on {applied // views:,} events at {catch_up_rate:,.0f}/s")
            await pool.execute("VACUUM ANALYZE jobtrail.job_executions")
            count = await pool.fetchval("SELECT count(*) FROM jobtrail.job_executions")
            print(f"the views hold {count:,} jobs", flush=True)

            await get_by_id(pool, jobs, 200)  # warm up
            by_id = await get_by_id(pool, jobs, 5000)
            await list_pages(pool, 5)  # warm up
            pages, worst = await list_pages(pool, 60)
            print(
                "slowest page per filter (ms): "
                + ", ".join(f"{k} {v:.1f}" for k, v in sorted(worst.items()))
            )
            print(f"measuring lag: {lag_jobs:,} jobs at {rate:,.0f}/s", flush=True)
            lags = await lag(pool, dsn, lag_jobs, rate)
        finally:
            await pool.close()
    bench_line("rebuild_events_per_s", rebuild, "events/s")
    bench_line("catch_up_events_per_s", catch_up_rate, "events/s")
    bench_line("get_by_id_p50_ms", percentile(by_id, 50), "ms")
    bench_line("get_by_id_p99_ms", percentile(by_id, 99), "ms")
    bench_line("list_page_p50_ms", percentile(pages, 50), "ms")
    bench_line("list_page_p99_ms", percentile(pages, 99), "ms")
    bench_line("projection_lag_p50_ms", percentile(lags, 50), "ms")
    bench_line("projection_lag_p99_ms", percentile(lags, 99), "ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to rebuild from")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the views to query")
    parser.add_argument("--lag-jobs", type=int, default=3000, help="jobs enqueued for the lag")
    parser.add_argument("--rate", type=float, default=300.0, help="jobs/s enqueued for the lag")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.jobs, args.lag_jobs, args.rate))
