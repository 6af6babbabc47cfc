"""Verification throughput: ``jobstore.audit_verify.verify`` over a log of N events.

    python bench/audit.py [--events 200000] [--rounds 3]

Builds a scratch log of job-like streams (5 events each, appended 500 per call), reads its
audit lag (what ``/metrics`` and the dashboard read: counts at their limit when nothing is
anchored), chains it (``jobtrail.chain_events``, 10,000 events per statement), anchors it,
then verifies it ``--rounds`` times (every event's hash recomputed in Python from its stored
fields, every anchored head checked); prints the median events/s and the time per anchor.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jobstore
from bench.append import sample_event
from bench.common import Timer, bench_line, scratch_database
from jobstore import audit, audit_verify

KEY = audit.AuditKey(b"bench-audit-key-0123456789abcdef")
PER_STREAM = 5


async def fill(store: jobstore.EventStore, total: int) -> None:
    """``total`` events in streams of PER_STREAM, 100 streams per call."""
    streams = total // PER_STREAM
    for start in range(0, streams, 100):
        await store.append_streams(
            [
                jobstore.StreamAppend(
                    f"job-bench-{s}",
                    [sample_event(s * PER_STREAM + k) for k in range(PER_STREAM)],
                    jobstore.NO_STREAM,
                )
                for s in range(start, min(start + 100, streams))
            ]
        )


async def main(total: int, rounds: int) -> None:
    async with scratch_database() as dsn:
        pool = await jobstore.create_pool(dsn, min_size=2, max_size=4)
        try:
            timer = Timer()
            await fill(jobstore.EventStore(pool), total)
            print(f"appended {total:,} events in {timer.elapsed:.1f} s", flush=True)
            lag_ms = []
            for _ in range(5):  # what /metrics and the dashboard read, with nothing anchored
                timer = Timer()
                lag = await audit.lag(pool)
                lag_ms.append(timer.elapsed * 1000)
            print(f"audit lag: {lag.unanchored:,} events counted (the limit)", flush=True)
            timer = Timer()
            chained = await audit.chain_pending(pool)
            chaining = chained / timer.elapsed
            print(f"chained {chained:,} events in {timer.elapsed:.1f} s", flush=True)
            timer = Timer()
            anchors = await audit.Anchorer(pool, dsn, KEY).anchor_through()
            anchoring = total / timer.elapsed
            print(f"{len(anchors)} anchors in {timer.elapsed:.1f} s", flush=True)
            rates: list[float] = []
            for round_ in range(rounds):
                timer = Timer()
                report = await audit_verify.verify(pool, KEY)
                assert report.intact, report.breaks[:3]
                assert report.events_checked == total
                rates.append(total / timer.elapsed)
                print(f"round {round_ + 1}/{rounds}: {rates[-1]:,.0f} events/s", flush=True)
        finally:
            await pool.close()
    bench_line("audit_verify_events_per_s", statistics.median(rates), "events/s")
    bench_line("audit_chain_events_per_s", chaining, "events/s")
    bench_line("audit_anchor_events_per_s", anchoring, "events/s")
    bench_line("audit_lag_ms", statistics.median(lag_ms), "ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
