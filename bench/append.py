"""Append throughput: jobstore's append against raw asyncpg on the same server, same run.

    python bench/append.py [--events 20000] [--only single|multi]
    python bench/append.py --compare-chain [--rounds 5]   # the hash chain's cost, same run
                                                          # (appends while it is computed)

Single process, on DATABASE_URL's server (or the embedded one): events/s for raw asyncpg
``executemany`` in batches of 100 (the reference), for ``EventStore.append`` with 100
events per call, and with 1 event per call from 8 concurrent tasks; then the
batched-vs-raw ratio.

Several processes (``--processes 4``, 8 tasks each, one event per call) against raw
asyncpg single-row commits from the same number of connections, on a private scratch
server started here (initdb/pg_ctl from ``--pg-bin``) with a remote database's commit
latency simulated by ``commit_delay`` (µs, ``commit_siblings = 0``): the shared server's
configuration is never touched.  Prints ``append_4proc_vs_raw_ratio``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jobstore
from bench.common import (
    Timer,
    bench_line,
    machine,
    quiet_logs,
    scratch_database,
    scratch_database_on,
)
from jobstore import audit, job_events

ROUNDS = 5
MULTI_ROUNDS = 5
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
        rows: list[tuple[Any, ...]] = [
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


async def append_single(
    store: jobstore.EventStore, total: int, tasks: int = 8, tag: str = ""
) -> float:
    """Events/s for one-event appends from ``tasks`` concurrent tasks."""
    per_task = total // tasks

    async def worker(w: int) -> None:
        for i in range(per_task):
            await store.append(f"single{tag}-{w}-{i}", [sample_event(i)], jobstore.NO_STREAM)

    timer = Timer()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return per_task * tasks / timer.elapsed


@contextlib.contextmanager
def scratch_server(pg_bin: Path) -> Iterator[tuple[str, Path]]:
    """A private PostgreSQL in a temporary folder (as user postgres when run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="jobtrail-bench-pg-"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True)

    run(str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
    run(str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o", options,
        "-w", "start")  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", data
    finally:
        run(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _process(kind: str, dsn: str, tasks: int, seconds: float, go: ProcessEvent, out: Any) -> None:
    try:
        out.put(asyncio.run(_process_main(kind, dsn, tasks, seconds, go)))
    except BaseException:
        out.put(None)
        raise


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _process_main(
    kind: str, dsn: str, tasks: int, seconds: float, go: ProcessEvent
) -> tuple[int, float]:
    """One process's appends (jobstore) or single-row commits (raw) during ``seconds``."""
    loop = asyncio.get_running_loop()
    tag = f"{kind}-{os.getpid()}"
    conns: list[asyncpg.Connection] = []
    pool: asyncpg.Pool | None = None
    if kind == "raw":
        conns = [await jobstore.connect(dsn) for _ in range(tasks)]
    else:
        pool = await jobstore.create_pool(dsn, min_size=2, max_size=tasks)
        store = jobstore.EventStore(pool)
    await loop.run_in_executor(None, go.wait)
    deadline = loop.time() + seconds
    cpu = _cpu()

    async def task(t: int) -> int:
        i = 0
        while loop.time() < deadline:
            stream = f"{tag}-{t}-{i}"
            if kind == "raw":
                data = sample_event(i).model_dump(mode="json")  # as raw_batches does
                await conns[t].execute(RAW_INSERT, stream, 1, "job.started", 1, data, {})
            else:
                await store.append(stream, [sample_event(i)], jobstore.NO_STREAM)
            i += 1
        return i

    try:
        count = sum(await asyncio.gather(*(task(t) for t in range(tasks))))
        return count, _cpu() - cpu
    finally:
        for conn in conns:
            await conn.close()
        if pool is not None:
            await pool.close()


def server_cpu_seconds(data: Path) -> float:
    """CPU used so far by a server: postmaster, live backends, and backends that ended."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == postmaster:  # its own time and its reaped children's
                total += sum(int(f) for f in fields[11:15]) / tick
            elif ppid == postmaster:
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclass
class RoundResult:
    """One multi-process round: throughput, and CPU per event in the clients and the server."""

    events_per_s: float
    client_us_per_event: float
    server_us_per_event: float


def processes_round(
    kind: str, dsn: str, data: Path, processes: int, tasks: int, seconds: float
) -> RoundResult:
    """Events/s from ``processes`` processes of ``tasks`` tasks each, one event per commit."""
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_process, args=(kind, dsn, tasks, seconds, go, out))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    asyncio.run(asyncio.sleep(2.0))  # connections open before the start signal
    server_before = server_cpu_seconds(data)
    go.set()
    results = [out.get(timeout=seconds + 60) for _ in workers]
    for w in workers:
        w.join()
    if None in results:
        raise RuntimeError(f"a {kind} process failed; see its traceback above")
    count = sum(r[0] for r in results)
    client = sum(r[1] for r in results)
    server = server_cpu_seconds(data) - server_before
    return RoundResult(count / seconds, client / count * 1e6, server / count * 1e6)


async def _prepare_scratch(server_dsn: str, commit_delay: int) -> str:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute("CREATE DATABASE jobtrail_bench")
        # Only on the private scratch server: a remote database's commit latency.
        await admin.execute(f"ALTER SYSTEM SET commit_delay = {int(commit_delay)}")
        await admin.execute("ALTER SYSTEM SET commit_siblings = 0")
        await admin.execute("SELECT pg_reload_conf()")
        version = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    dsn = server_dsn.rsplit("/", 1)[0] + "/jobtrail_bench"
    await jobstore.migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(RAW_TABLE)
        delay = await conn.fetchval("SHOW commit_delay")
    finally:
        await conn.close()
    print(f"# scratch PostgreSQL {version}, commit_delay = {delay}; {machine()}", flush=True)
    return dsn


def main_processes(pg_bin: Path, processes: int, tasks: int, seconds: float, delay: int) -> None:
    """The multi-process case on a scratch server with simulated commit latency."""
    quiet_logs()
    results: dict[str, list[RoundResult]] = {"raw": [], "jobstore": []}
    with scratch_server(pg_bin) as (server_dsn, data):
        dsn = asyncio.run(_prepare_scratch(server_dsn, delay))
        for round_ in range(MULTI_ROUNDS):
            for kind, rounds in results.items():
                rounds.append(processes_round(kind, dsn, data, processes, tasks, seconds))
            raw, appended = results["raw"][-1], results["jobstore"][-1]
            print(
                f"round {round_ + 1}/{MULTI_ROUNDS} ({processes} processes x {tasks} tasks): "
                f"raw {raw.events_per_s:,.0f} events/s "
                f"(CPU/event: client {raw.client_us_per_event:.0f} us, "
                f"server {raw.server_us_per_event:.0f} us), "
                f"jobstore {appended.events_per_s:,.0f} events/s "
                f"(client {appended.client_us_per_event:.0f} us, "
                f"server {appended.server_us_per_event:.0f} us)",
                flush=True,
            )

    def median(kind: str, field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in results[kind]))

    name = f"append_{processes}proc"
    raw_rate, rate = median("raw", "events_per_s"), median("jobstore", "events_per_s")
    bench_line(f"{name}_raw_events_per_s", raw_rate, "events/s")
    bench_line(f"{name}_events_per_s", rate, "events/s")
    bench_line(f"{name}_vs_raw_ratio", rate / raw_rate, "x")
    for kind in results:
        for side in ("client", "server"):
            metric = f"{name}_{kind}_{side}_cpu_us_per_event"
            bench_line(metric, median(kind, f"{side}_us_per_event"), "us")


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


CHAIN_EVERY = 0.2
"""Seconds between the bench's chaining rounds (production: every anchor interval, 30 s by
default): often, so that chaining overlaps the appends it competes with."""


@dataclass(slots=True)
class _Chainer:
    """Chains what the appends write while they run, as the anchorer does (sql/0045)."""

    pool: asyncpg.Pool
    chained: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Chain every :data:`CHAIN_EVERY` seconds until ``stop``, then what is left."""
        while not stop.is_set():
            self.chained += await audit.chain_pending(self.pool)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHAIN_EVERY)
        self.chained += await audit.chain_pending(self.pool)


async def backend_pids(pool: asyncpg.Pool) -> list[int]:
    """The server processes behind ``pool``'s connections (all of its database's backends)."""
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend'"
    )
    return [int(r["pid"]) for r in rows]


def backends_cpu(pids: list[int]) -> float | None:
    """CPU seconds used so far by these server processes (ns resolution), None when the
    server is not on this machine (or not readable)."""
    total = 0
    try:
        for pid in pids:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


async def _chain_round(
    pool: asyncpg.Pool,
    pids: list[int],
    total: int,
    round_: int,
    chainer: tuple[_Chainer, list[int]] | None,
) -> dict[str, float]:
    """One side's round: events/s, server CPU µs per event of the appends' backends and, with
    a ``chainer`` (and its backend's pid) running meanwhile, of the chaining."""
    store = jobstore.EventStore(pool)
    figures: dict[str, float] = {}
    cases: list[tuple[str, int, Callable[[], Awaitable[float]]]] = [
        ("batch100", total, lambda: append_batches(store, total, round_)),
        ("single", total // 4 // 8 * 8, lambda: append_single(store, total // 4, 8, f"r{round_}")),
    ]
    for case, count, append in cases:
        stop = asyncio.Event()
        running = asyncio.ensure_future(chainer[0].run(stop)) if chainer else None
        cpu, chain_cpu = backends_cpu(pids), backends_cpu(chainer[1]) if chainer else None
        figures[case] = await append()
        after = backends_cpu(pids)
        stop.set()
        if running is not None:
            await running
        if cpu is not None and after is not None:
            figures[f"{case}_cpu"] = (after - cpu) / count * 1e6
        if chainer is not None and chain_cpu is not None:
            chain_after = backends_cpu(chainer[1])
            assert chain_after is not None
            figures[f"{case}_chain_cpu"] = (chain_after - chain_cpu) / count * 1e6
    return figures


async def main_compare_chain(total: int, rounds: int = ROUNDS) -> None:
    """Appends while the chain is computed beside them, against appends alone, same run.

    The chain is computed off the append path (sql/0045): both databases have every
    migration and the same append functions.  On the chained side a chainer chains the new
    events every :data:`CHAIN_EVERY` seconds while the appends run (each round ends with
    what is left chained); on the plain side nothing is chained.  The difference is what
    the chain costs the appends: the chainer's competition for the server (and, on this
    2-core machine, for the cores the client and the appends' backend use).

    Besides events/s (what a user sees, but noisy on a shared machine), the server CPU each
    side's append backends spent per event, and the chainer's own per chained event
    (/proc/PID/schedstat): the chain's whole price in server CPU.
    """
    async with scratch_database() as chained_dsn, scratch_database_on(chained_dsn) as plain_dsn:
        pools = {
            "chained": await jobstore.create_pool(chained_dsn, min_size=8, max_size=8),
            "plain": await jobstore.create_pool(plain_dsn, min_size=8, max_size=8),
        }
        chain_pool = await jobstore.create_pool(chained_dsn, min_size=1, max_size=1)
        figures: dict[tuple[str, str], list[float]] = {}
        try:
            pids = {side: await backend_pids(pool) for side, pool in pools.items()}
            chain_pid = await chain_pool.fetchval("SELECT pg_backend_pid()")
            pids["chained"] = [p for p in pids["chained"] if p != chain_pid]
            chainer = _Chainer(chain_pool)
            for round_ in range(rounds):
                # Alternate which side goes first, so a noisy moment is shared out.
                order = ["chained", "plain"] if round_ % 2 == 0 else ["plain", "chained"]
                for side in order:
                    got = await _chain_round(
                        pools[side],
                        pids[side],
                        total // rounds,
                        round_,
                        (chainer, [chain_pid]) if side == "chained" else None,
                    )
                    for case, value in got.items():
                        figures.setdefault((side, case), []).append(value)
                print(
                    f"round {round_ + 1}/{rounds}: "
                    + ", ".join(
                        f"{side} {case} {figures[(side, case)][-1]:,.0f}"
                        for side in ("plain", "chained")
                        for case in ("batch100", "single")
                    )
                    + f" events/s; {chainer.chained:,} events chained so far",
                    flush=True,
                )
            unchained = await pools["chained"].fetchval(
                "SELECT count(*) FROM jobtrail.events e WHERE NOT EXISTS"
                " (SELECT 1 FROM jobtrail.event_hashes h WHERE h.position = e.position)"
            )
            print(f"chained side: {chainer.chained:,} events chained, {unchained} left")
        finally:
            await chain_pool.close()
            for pool in pools.values():
                await pool.close()
    for case, name in (("batch100", "batch100"), ("single", "single_8tasks")):
        plain = statistics.median(figures[("plain", case)])
        chained = statistics.median(figures[("chained", case)])
        bench_line(f"append_{name}_unchained_events_per_s", plain, "events/s")
        bench_line(f"append_{name}_chained_events_per_s", chained, "events/s")
        bench_line(f"cost_hash_chain_append_{name}_pct", (plain - chained) / plain * 100, "%")
        if (cpu_key := ("plain", f"{case}_cpu")) in figures:
            plain_cpu = statistics.median(figures[cpu_key])
            chained_cpu = statistics.median(figures[("chained", f"{case}_cpu")])
            chain_cpu = statistics.median(figures[("chained", f"{case}_chain_cpu")])
            bench_line(f"append_{name}_unchained_server_cpu_us_per_event", plain_cpu, "us")
            bench_line(f"append_{name}_chained_server_cpu_us_per_event", chained_cpu, "us")
            bench_line(f"chain_{name}_server_cpu_us_per_event", chain_cpu, "us")
            bench_line(
                f"cost_hash_chain_server_cpu_{name}_pct",
                (chained_cpu + chain_cpu - plain_cpu) / plain_cpu * 100,
                "%",
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000, help="events per phase")
    parser.add_argument("--only", choices=["single", "multi"], help="run one case only")
    parser.add_argument(
        "--compare-chain",
        action="store_true",
        help="only: appends while the hash chain is computed beside them, against alone",
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="--compare-chain rounds")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=8, help="concurrent tasks per process")
    parser.add_argument("--seconds", type=float, default=5.0, help="per multi-process round")
    parser.add_argument("--commit-delay", type=int, default=2000, help="µs, scratch server")
    parser.add_argument("--pg-bin", type=Path, default=Path("/usr/lib/postgresql/15/bin"))
    args = parser.parse_args()
    if args.compare_chain:
        asyncio.run(main_compare_chain(args.events, args.rounds))
        sys.exit(0)
    if args.only != "multi":
        asyncio.run(main(args.events))
    if args.only != "single":
        main_processes(args.pg_bin, args.processes, args.tasks, args.seconds, args.commit_delay)
