"""Job stats with the pending figures (``jobtrail stats``, ``/metrics``) at a million jobs.

    python bench/stats.py [--jobs 1000000] [--calls 20] [--dsn DSN]

Loads ``--jobs`` jobs into the log with ``bench/projections.py``'s generator (the same mix:
one job in ten pending, so 100,000 pending at a million), fills ``job_executions`` from the
log with one set-based statement (status from each stream's last event; one pending job in
four under a flow-control limit) instead of running the projections, then times
``projections.get_job_stats(with_pending=True)``, the call every Prometheus scrape makes,
and prints ``BENCH stats_with_pending_ms`` (the median of ``--calls`` calls).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

import jobstore
import projections
from bench.common import bench_line, scratch_database
from bench.projections import EVENTS_PER_10_JOBS, load

# A view row per job stream, from its dispatch and its last event (what the fold would
# leave for the loader's shapes); a quarter of the pending jobs carry a flow control.
FILL = """
INSERT INTO jobtrail.job_executions
       (job_id, job_type, status, payload, metadata, user_id, organization_id, dispatch,
        attempt, attempts, max_retries, cancel_requested, ever_completed, created_at,
        replay_count, source, version, position, options)
SELECT d.data ->> 'job_id', d.data ->> 'job_type',
       CASE l.event_type WHEN 'job.dispatched' THEN 'pending'
                         WHEN 'job.started' THEN 'processing'
                         WHEN 'job.attempt_failed' THEN 'retrying'
                         WHEN 'job.completed' THEN 'completed'
                         ELSE 'failed' END,
       (d.data -> 'payload')::jsonb, (d.data -> 'metadata')::jsonb,
       (d.data -> 'metadata' ->> 'user_id')::bigint,
       (d.data -> 'metadata' ->> 'organization_id')::bigint,
       1, 0, 0, 3, false, l.event_type = 'job.completed', d.recorded_at, 0, 'api',
       l.version, l.position,
       CASE WHEN l.event_type = 'job.dispatched' AND (d.data -> 'payload' ->> 'n')::bigint % 40 = 9
            THEN (d.data -> 'options')::jsonb
                 || '{"flow_control": {"key": "bench", "parallelism": 2}}'
            ELSE (d.data -> 'options')::jsonb END
  FROM jobtrail.events AS d
  JOIN LATERAL (SELECT e.event_type, e.version, e.position
                  FROM jobtrail.events AS e
                 WHERE e.stream_id = d.stream_id
                 ORDER BY e.version DESC LIMIT 1) AS l ON true
 WHERE d.version = 1 AND d.stream_id LIKE 'job-%'
ON CONFLICT (job_id) DO NOTHING
"""


async def prepare(pool: asyncpg.Pool, jobs: int) -> None:
    """Load the jobs and fill the view, unless the database has them already."""
    if not await pool.fetchval("SELECT EXISTS (SELECT FROM jobtrail.events)"):
        print(f"loading {jobs:,} jobs (~{jobs * EVENTS_PER_10_JOBS // 10:,} events)", flush=True)
        await load(pool, 0, jobs)
        await pool.execute("ANALYZE jobtrail.events")
    if not await pool.fetchval("SELECT EXISTS (SELECT FROM jobtrail.job_executions)"):
        print("filling job_executions from the log", flush=True)
        await pool.execute(FILL, timeout=3600)
    await pool.execute("VACUUM ANALYZE jobtrail.job_executions")
    count, pending = await pool.fetchrow(
        "SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM jobtrail.job_executions"
    )
    print(f"the view holds {count:,} jobs, {pending:,} of them pending", flush=True)


async def measure(pool: asyncpg.Pool, calls: int) -> list[float]:
    """Milliseconds per get_job_stats(with_pending=True), after two warm-up calls."""
    samples: list[float] = []
    for n in range(calls + 2):
        started = time.perf_counter()
        stats = await projections.get_job_stats(pool, with_pending=True)
        if n >= 2:
            samples.append((time.perf_counter() - started) * 1000)
    pending = {name: t.pending for name, t in stats.by_type.items()}
    print("pending per type: " + ", ".join(f"{k} {v}" for k, v in sorted(pending.items())))
    return samples


async def run(dsn: str, jobs: int, calls: int) -> list[float]:
    pool = await jobstore.create_pool(dsn, min_size=1, max_size=2)
    try:
        await prepare(pool, jobs)
        return await measure(pool, calls)
    finally:
        await pool.close()


async def main(jobs: int, calls: int, dsn: str | None) -> None:
    if dsn is not None:  # a database of your own, kept: load once, measure again and again
        await jobstore.migrate(dsn)
        samples = await run(dsn, jobs, calls)
    else:
        async with scratch_database() as scratch:
            samples = await run(scratch, jobs, calls)
    print(f"get_job_stats(with_pending=True): min {min(samples):.1f} ms, max {max(samples):.1f}")
    bench_line("stats_with_pending_ms", statistics.median(samples), "ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the log and view")
    parser.add_argument("--calls", type=int, default=20, help="timed calls")
    parser.add_argument(
        "--dsn", help="an existing database to load once and keep (default: a scratch one)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.calls, args.dsn))
