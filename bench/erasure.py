"""Personal data: what sealing costs an enqueue, opening a page costs a reader, and an erasure.

    python bench/erasure.py [--jobs 2000]

Enqueues ``--jobs`` send-email jobs (personal fields: a data key is made and the payload
sealed) and as many cleanup-old-data jobs (no personal field: stored as before), one at a
time, then opens pages of 100 sealed executions as an admin reader does, then erases the
one user all the email jobs belong to.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jobstore
import projections
from bench.common import Timer, bench_line, percentile, scratch_database

EMAIL = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}
CLEANUP = {"retention": 30}
LATER = {"delay": 3600}


async def latency(
    dispatcher: jobstore.Dispatcher, job_type: str, payload: dict, n: int
) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await dispatcher.enqueue(job_type, payload, {"user_id": 1}, LATER)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def main(jobs: int) -> None:
    async with scratch_database() as dsn:
        pool = await jobstore.create_pool(dsn, min_size=2, max_size=4)
        try:
            store = jobstore.EventStore(pool)
            dispatcher = jobstore.Dispatcher(store)
            await latency(dispatcher, "cleanup-old-data", CLEANUP, 50)  # warm up
            plain = await latency(dispatcher, "cleanup-old-data", CLEANUP, jobs)
            sealed = await latency(dispatcher, "send-email", EMAIL, jobs)
            for name, samples in (("plain", plain), ("sealed", sealed)):
                p50, p99 = percentile(samples, 50), percentile(samples, 99)
                print(f"enqueue {name:6}: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({jobs} jobs)")
                bench_line(f"enqueue_{name}_p50_ms", p50, "ms")
            await projections.ProjectionRunner(pool, dsn).run_until_caught_up()
            page = await projections.list_job_executions(pool, type="send-email", limit=100)
            timer = Timer()
            rounds = 20
            for _ in range(rounds):
                opened = await store.keys.reveal_all(page.items)
            per_page = timer.elapsed / rounds * 1000
            assert opened[0].payload["to"] == "ada@example.com"
            print(f"open a page of {len(page.items)} sealed executions: {per_page:.2f} ms")
            bench_line("reveal_page_100_ms", per_page, "ms")
            timer = Timer()
            done = await jobstore.erasure.erase(store, "user", 1)
            seconds = timer.elapsed
            print(
                f"erase user 1: {len(done.job_ids)} keys destroyed in {seconds:.3f} s "
                f"(vacuumed: {done.vacuumed})"
            )
            bench_line("erase_keys_per_s", len(done.job_ids) / seconds, "keys/s")
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    asyncio.run(main(parser.parse_args().jobs))
