"""Append throughput: jobstore's append against raw asyncpg on the same server, same run.

    python bench/append.py [--events 20000]

Prints events/s for raw asyncpg ``executemany`` in batches of 100 (the reference), for
``EventStore.append`` with 100 events per call, and with 1 event per call from 8
concurrent tasks; then the batched-vs-raw ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jobstore
from bench.common import Timer, bench_line, scratch_database
from jobstore import job_events

ROUNDS = 5
RAW_TABLE = """
CREATE TABLE bench_raw_events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text NOT NULL, version integer NOT NULL, event_type text NOT NULL,
    schema_version smallint NOT NULL, data json NOT NULL, metadata json NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (stream_id, version))
"""
RAW_INSERT = (
    "INSERT INTO bench_raw_events (stream_id, version, event_type, schema_version, data, "
    "metadata) VALUES ($1, $2, $3, $4, $5, $6)"
)


def sample_event(i: int) -> job_events.JobStarted:
    """A realistic small event."""
    return job_events.JobStarted(
        dispatch=1, attempt=1, message_id=f"msg_{i:012d}", lease_until=1_800_000_000.0 + i
    )


async def raw_batches(pool: asyncpg.Pool, total: int, round_: int) -> float:
    """Events/s for raw executemany in batches of 100, one transaction per batch."""
    timer = Timer()
    for start in range(0, total, 100):
        rows = [
            (
                f"job-{round_}-{i // 10}",
                i % 10 + 1,
                "job.started",
                1,
                sample_event(i).model_dump(mode="json"),
                {},
            )
            for i in range(start, start + 100)
        ]
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(RAW_INSERT, rows)
    return total / timer.elapsed


async def append_batches(store: jobstore.EventStore, total: int, round_: int) -> float:
    """Events/s for jobstore appends of 100 events (10 streams of 10) per call."""
    timer = Timer()
    for start in range(0, total, 100):
        await store.append_streams(
            [
                jobstore.StreamAppend(
                    f"batch-{round_}-{start}-{s}",
                    [sample_event(start + s * 10 + k) for k in range(10)],
                    jobstore.NO_STREAM,
                )
                for s in range(10)
            ]
        )
    return total / timer.elapsed


async def append_single(store: jobstore.EventStore, total: int, tasks: int = 8) -> float:
    """Events/s for one-event appends from ``tasks`` concurrent tasks."""
    per_task = total // tasks

    async def worker(w: int) -> None:
        for i in range(per_task):
            await store.append(f"single-{w}-{i}", [sample_event(i)], jobstore.NO_STREAM)

    timer = Timer()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return per_task * tasks / timer.elapsed


async def main(total: int) -> None:
    async with scratch_database() as dsn:
        pool = await jobstore.create_pool(dsn, min_size=8, max_size=8)
        try:
            store = jobstore.EventStore(pool)
            await pool.execute(RAW_TABLE)
            raws: list[float] = []
            batches: list[float] = []
            # Alternate the two in rounds and take medians, so a noisy moment on this
            # shared machine does not land on one side only.
            for round_ in range(ROUNDS):
                raws.append(await raw_batches(pool, total // ROUNDS, round_))
                batches.append(await append_batches(store, total // ROUNDS, round_))
                print(
                    f"round {round_ + 1}/{ROUNDS}: raw {raws[-1]:,.0f} events/s, "
                    f"jobstore {batches[-1]:,.0f} events/s",
                    flush=True,
                )
            raw, batched = statistics.median(raws), statistics.median(batches)
            print(f"raw asyncpg executemany, batches of 100: {raw:,.0f} events/s (median)")
            print(f"jobstore append, 100 events per call:    {batched:,.0f} events/s (median)")
            single = await append_single(store, total // 4)
            print(f"jobstore append, 1 event x 8 tasks:      {single:,.0f} events/s", flush=True)
        finally:
            await pool.close()
    bench_line("append_raw_batch100_events_per_s", raw, "events/s")
    bench_line("append_batch100_events_per_s", batched, "events/s")
    bench_line("append_single_8tasks_events_per_s", single, "events/s")
    bench_line("append_batch100_vs_raw_ratio", batched / raw, "x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000, help="events per phase")
    asyncio.run(main(parser.parse_args().events))
