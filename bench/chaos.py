"""The long fault-injection run of issue 15: many jobs, many faults, every invariant checked.

    python bench/chaos.py --seed 7 --jobs 10000 --duration 600 --faults 40
    python bench/chaos.py --kinds pg_restart_fast,pg_restart_immediate --duration 90 --faults 30

The harness is ``tests/chaos`` (the short seeded run of the test suite uses the same one):
a private PostgreSQL (initdb/pg_ctl in a temporary folder), ``jobtrail qstash-dev`` and
``jobtrail serve`` as processes; this process enqueues the jobs (plain, failing a few
times, failing for good, delayed, with repeated idempotency keys), kills the host with
SIGKILL, restarts qstash_local empty, restarts PostgreSQL fast and immediate, sends
duplicate signed deliveries, cancels and replays, and tails the log.  Then it lets the
system settle (bounded) and checks, from the log and the views: nothing lost or stuck,
no dispatch or outcome recorded twice, no early start, views equal to a fold of the log,
no event skipped by the tailer.  Exit status 1 if any invariant broke.

Run it from a clean copy of the code when others are editing the tree (restarted
processes load the code again), e.g. ``git archive HEAD | tar -x -C /tmp/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_line, machine, quiet_logs
from tests.chaos import ChaosConfig, run
from tests.chaos.faults import FAULT_KINDS


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


async def main(args: argparse.Namespace) -> int:
    quiet_logs()
    print(f"# {machine()}; load average {_load()}", flush=True)
    config = ChaosConfig(
        seed=args.seed,
        jobs=args.jobs,
        duration=args.duration,
        hosts=args.hosts,
        faults=args.faults,
        fault_kinds=tuple(args.kinds.split(",")),
        duplicates_per_second=args.duplicates_per_second,
        operations_per_second=args.operations_per_second,
        settle_timeout=args.settle_timeout,
        keep=args.keep,
    )
    result = await run(config, say=_say)
    print(result.summary(), flush=True)
    print(f"# load average after the run {_load()}", flush=True)
    bench_line("chaos_jobs", result.jobs, "jobs")
    bench_line("chaos_events", result.events, "events")
    bench_line("chaos_faults", sum(result.faults.values()), "faults")
    bench_line("chaos_duplicate_deliveries", result.duplicates, "deliveries")
    bench_line("chaos_lost", result.findings["lost"], "jobs")
    bench_line("chaos_stuck", result.findings["stuck"], "jobs")
    bench_line("chaos_double_dispatches", result.findings["double_dispatches"], "jobs")
    bench_line("chaos_double_outcomes", result.findings["double_outcomes"], "outcomes")
    bench_line("chaos_early_starts", result.findings["early_starts"], "starts")
    bench_line("chaos_view_mismatches", result.findings["view_mismatches"], "jobs")
    bench_line("chaos_skipped", result.findings["skipped"], "events")
    bench_line("chaos_host_unexpected_errors", result.findings["host_unexpected_errors"], "errors")
    bench_line("chaos_failed_by_faults", sum(result.findings.failed_by_faults.values()), "jobs")
    bench_line("chaos_settle_s", result.settle_seconds, "s")
    return 0 if result.ok and result.settled else 1


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=10_000, help="enqueue requests")
    parser.add_argument(
        "--duration", type=float, default=300.0, help="seconds over which jobs and faults come"
    )
    parser.add_argument("--hosts", type=int, default=2, help="hosts sharing the database")
    parser.add_argument("--faults", type=int, default=20, help="process faults, spread evenly")
    parser.add_argument(
        "--kinds",
        default=",".join(FAULT_KINDS),
        help="fault kinds to draw from, comma-separated (pg_restart_fast alone: a storm)",
    )
    parser.add_argument("--duplicates-per-second", type=float, default=10.0)
    parser.add_argument("--operations-per-second", type=float, default=1.0)
    parser.add_argument("--settle-timeout", type=float, default=600.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the processes' logs here")
    sys.exit(asyncio.run(main(parser.parse_args())))
