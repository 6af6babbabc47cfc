"""Dispatch throughput: enqueue latency and rates, enqueue_many, and the relay into qstash_local.

    python bench/dispatch.py [--jobs 5000]

qstash_local runs in this process; jobs are enqueued with a one-hour delay so the relay
figure measures publishing (QStash's batch API through the official SDK), not delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qstash import AsyncQStash

import jobstore
import qstash_local
from bench.common import Timer, bench_line, percentile, scratch_database
from jobstore.dispatcher import Dispatcher, JobRequest
from jobstore.relay import Relay, RelayConfig

PAYLOAD = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}
LATER = {"delay": 3600}


async def enqueue_latency(dispatcher: Dispatcher, count: int) -> list[float]:
    """Milliseconds per enqueue, one task."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await dispatcher.enqueue("send-email", PAYLOAD, {"user_id": 1}, LATER)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def enqueue_concurrent(dispatcher: Dispatcher, count: int, tasks: int = 8) -> float:
    """Jobs/s for single enqueues from ``tasks`` concurrent tasks."""
    per_task = count // tasks

    async def worker() -> None:
        for _ in range(per_task):
            await dispatcher.enqueue("send-email", PAYLOAD, {"user_id": 1}, LATER)

    timer = Timer()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return per_task * tasks / timer.elapsed


async def enqueue_many(
    dispatcher: Dispatcher, count: int, job: JobRequest, batch: int = 500
) -> float:
    """Jobs/s for ``enqueue_many`` in batches of ``batch`` copies of ``job``."""
    timer = Timer()
    for _ in range(0, count, batch):
        await dispatcher.enqueue_many([job] * batch)
    return count / timer.elapsed


async def relay_rate(store: jobstore.EventStore, dsn: str, qstash_url: str) -> tuple[int, float]:
    """(events handled, dispatches published/s) for the relay catching up with the log."""
    client = AsyncQStash(qstash_local.DEV_TOKEN, base_url=qstash_url, retry=False)
    relay = Relay(store, dsn, client, RelayConfig(public_url="http://127.0.0.1:9"))
    try:
        timer = Timer()
        handled = await relay.run_until_caught_up()
        return handled, relay.published / timer.elapsed
    finally:
        await client.http._client.aclose()


async def main(jobs: int) -> None:
    async with scratch_database() as dsn, qstash_local.serve(port=0) as qstash:
        pool = await jobstore.create_pool(dsn, min_size=8, max_size=8)
        try:
            store = jobstore.EventStore(pool)
            dispatcher = Dispatcher(store)
            await enqueue_latency(dispatcher, 100)  # warm-up
            latencies = await enqueue_latency(dispatcher, 2000)
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            print(f"enqueue latency, one task: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
            concurrent = await enqueue_concurrent(dispatcher, jobs)
            print(f"enqueue from 8 tasks: {concurrent:,.0f} jobs/s", flush=True)
            email = JobRequest("send-email", PAYLOAD, None, LATER)
            many = await enqueue_many(dispatcher, jobs * 4, email)
            print(f"enqueue_many (500 send-email per call): {many:,.0f} jobs/s", flush=True)
            cleanup = JobRequest("cleanup-old-data", {"retention": 30}, None, LATER)
            simple = await enqueue_many(dispatcher, jobs * 4, cleanup)
            print(f"enqueue_many (500 cleanup-old-data per call): {simple:,.0f} jobs/s")
            handled, published = await relay_rate(store, dsn, qstash.url)
            print(f"relay: {handled:,} events, published {published:,.0f} jobs/s", flush=True)
        finally:
            await pool.close()
    bench_line("enqueue_p50_ms", p50, "ms")
    bench_line("enqueue_p99_ms", p99, "ms")
    bench_line("enqueue_8tasks_jobs_per_s", concurrent, "jobs/s")
    bench_line("enqueue_many_jobs_per_s", many, "jobs/s")
    bench_line("enqueue_many_simple_payload_jobs_per_s", simple, "jobs/s")
    bench_line("relay_published_per_s", published, "jobs/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per throughput phase")
    asyncio.run(main(parser.parse_args().jobs))
