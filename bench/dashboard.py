"""Dashboard: server time of the overview, a filtered jobs page and a job page at scale.

    python bench/dashboard.py [--jobs 1000000] [--requests 200]

Loads ``--jobs`` jobs into the log with ``bench/projections.py``'s generator (the same mix
of completed, retried, failed and pending jobs), lets the projection runner catch up,
then requests each page over loopback HTTP from the standalone dashboard, signed in
(round trips, so an upper bound of the server time), and prints
``BENCH dashboard_<page>_p99_ms`` (goal: < 100 ms each).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp.test_utils import TestClient, TestServer

import jobstore
import projections
from bench.common import bench_line, percentile, scratch_database
from bench.projections import EVENTS_PER_10_JOBS, job_id, load
from workers.dashboard import make_dashboard, session

SECRET = "bench-dashboard-token-0123456789"
FIRST = datetime(2026, 1, 1, tzinfo=UTC)


def pages(rng: random.Random, jobs: int) -> dict[str, str]:
    """One request per page: a random failed job (shape 8 of every 10) for the job page, a
    random moment within the data set (its jobs are born two seconds apart from
    2026-01-01) for the overview's time travel with a week of charts before it."""
    failed = rng.randrange(jobs // 10) * 10 + 8
    moment = FIRST + timedelta(seconds=rng.randrange(2 * jobs))
    return {
        "overview": "/",
        "overview_at": f"/?window=week&at={moment:%Y-%m-%dT%H:%M}",
        "overview_hour_at": f"/?window=hour&type=send-email&at={moment:%Y-%m-%dT%H:%M}",
        "jobs": "/jobs?status=failed&type=" + rng.choice(["send-email", "export-data"]),
        "job": f"/jobs/{job_id(failed)}",
    }


async def measure(dsn: str, jobs: int, requests: int) -> dict[str, list[float]]:
    token = projections.token.token("bench", SECRET, "read")
    settings = jobstore.Settings(database_url=dsn)
    access = projections.Access((token,), public_probes=False)
    app = make_dashboard(settings, access=access, dsn=dsn, standalone=True)
    cookie = session.issue(session.key_for((token,)), token)
    samples: dict[str, list[float]] = {name: [] for name in pages(random.Random(), jobs)}
    rng = random.Random(7)
    async with TestClient(TestServer(app)) as client:
        client.session.cookie_jar.update_cookies({session.COOKIE: cookie})
        for round_ in range(requests + 10):
            for name, path in pages(rng, jobs).items():
                started = time.perf_counter()
                async with client.get(path) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                if round_ >= 10:  # warmed up
                    samples[name].append((time.perf_counter() - started) * 1000)
    return samples


async def prepare(dsn: str, jobs: int) -> None:
    """Load the jobs (unless the log has them already) and let the views catch up."""
    pool = await jobstore.create_pool(dsn, min_size=2, max_size=4)
    try:
        if not await pool.fetchval("SELECT EXISTS (SELECT FROM jobtrail.events)"):
            print(f"loading {jobs:,} jobs (~{jobs * EVENTS_PER_10_JOBS // 10:,} events)")
            await load(pool, 0, jobs)
            await pool.execute("ANALYZE jobtrail.events")
        started = time.perf_counter()
        runner = projections.ProjectionRunner(pool, dsn, batch_size=5000)
        with projections.relaxed_gc():
            await runner.run_until_caught_up()
        count = await pool.fetchval("SELECT count(*) FROM jobtrail.job_executions")
        print(f"views hold {count:,} jobs ({time.perf_counter() - started:.0f} s)")
        await pool.execute("VACUUM ANALYZE jobtrail.job_executions")
        await pool.execute("VACUUM ANALYZE jobtrail.job_buckets")
        await pool.execute("VACUUM ANALYZE jobtrail.job_bucket_minutes")
        widths = await pool.fetch(
            "SELECT 60 AS width, count(*) FROM jobtrail.job_bucket_minutes UNION ALL "
            "(SELECT width, count(*) FROM jobtrail.job_buckets GROUP BY width ORDER BY width)"
        )
        print("job_buckets rows per width: " + ", ".join(f"{w}s {n:,}" for w, n in widths))
    finally:
        await pool.close()


async def main(jobs: int, requests: int, dsn: str | None) -> None:
    if dsn is not None:  # a database of your own, kept: load once, measure again and again
        await jobstore.migrate(dsn)
        await prepare(dsn, jobs)
        samples = await measure(dsn, jobs, requests)
    else:
        async with scratch_database() as scratch:
            await prepare(scratch, jobs)
            samples = await measure(scratch, jobs, requests)
    for name, values in samples.items():
        bench_line(f"dashboard_{name}_p50_ms", percentile(values, 50), "ms")
        bench_line(f"dashboard_{name}_p99_ms", percentile(values, 99), "ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the log and views")
    parser.add_argument("--requests", type=int, default=200, help="requests per page")
    parser.add_argument(
        "--dsn", help="an existing database to load once and keep (default: a scratch one)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.requests, args.dsn))
