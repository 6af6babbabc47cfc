"""jobtrail against its peers in one run: pgqueuer and procrastinate, same server, no-op jobs.

    pip install -e ".[bench]"          # pgqueuer and procrastinate (bench only)
    python bench/peers.py [--jobs 5000] [--single-jobs 2000] [--concurrency 10]

Every system gets its own scratch database on DATABASE_URL's server and the same two cases:

* **producer + worker**: a worker process runs (``--concurrency`` jobs at once) while this
  process enqueues ``--single-jobs`` jobs one call each from 8 concurrent tasks; the
  figure is jobs / (first enqueue → last job done).  jobtrail's is ``bench/e2e.py``'s
  ``single`` phase (enqueue → relay → qstash_local → host, every event recorded).
* **drain**: ``--jobs`` jobs are enqueued in batches with no worker running, then a worker
  starts; the figure is jobs / (first job started → last job done).  jobtrail's is
  ``bench/e2e.py``'s flood (``enqueue_many`` batches while the host runs: jobtrail has no
  "no worker" state, the relay publishes as soon as jobs are in the log).

jobtrail runs first, as ``bench/e2e.py`` in a subprocess (its output is shown; its BENCH
lines are read back), then pgqueuer, then procrastinate.  Printed:
``BENCH e2e_vs_pgqueuer_ratio`` (jobtrail single ÷ pgqueuer producer+worker),
``BENCH flood_vs_pgqueuer_drain_ratio`` and each peer's own figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from bench.common import bench_line, machine, scratch_database

ROOT = Path(__file__).resolve().parents[1]
PRODUCER_TASKS = 8
DRAIN_BATCH = 500
DEADLINE_S = 300.0
BENCH = re.compile(r"^BENCH (\S+) (\S+) (\S+)$")


# ---------------------------------------------------------------- the workers (subprocesses)


def _first_job_recorder(path: str) -> Callable[[], None]:
    """Writes the wall-clock time of the first job this worker runs to ``path``."""
    seen = False

    def record() -> None:
        nonlocal seen
        if not seen:
            seen = True
            Path(path).write_text(repr(time.time()))

    return record


async def pgqueuer_worker(dsn: str, concurrency: int, first_path: str) -> None:
    """A pgqueuer worker running the no-op entrypoint until SIGTERM."""
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver

    connection = await asyncpg.connect(dsn)
    pgq = PgQueuer(AsyncpgDriver(connection))
    first = _first_job_recorder(first_path)

    @pgq.entrypoint("noop")
    async def noop(job: object) -> None:
        first()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    await pgq.run(batch_size=concurrency)  # its default run; jobs of a batch run concurrently


async def procrastinate_worker(dsn: str, concurrency: int, first_path: str) -> None:
    """A procrastinate worker running the no-op task until SIGTERM."""
    app = _procrastinate_app(dsn)
    first = _first_job_recorder(first_path)

    @app.task(name="noop")
    async def noop() -> None:
        first()

    async with app.open_async():
        await app.run_worker_async(concurrency=concurrency, install_signal_handlers=True)


def _procrastinate_app(dsn: str) -> object:
    import procrastinate

    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))


# ---------------------------------------------------------------- running one peer


class Peer:
    """What the bench needs of a peer library: install, enqueue, count what is left."""

    name = ""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def install(self) -> None:
        raise NotImplementedError

    async def producer(self) -> Callable[[], Awaitable[None]]:
        """One enqueue call (made from several tasks at once)."""
        raise NotImplementedError

    async def fill(self, count: int) -> None:
        raise NotImplementedError

    async def left(self) -> int:
        """Jobs not finished yet."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections."""


class PgQueuerPeer(Peer):
    """pgqueuer: asyncpg, a ``pgqueuer`` table the worker deletes finished jobs from."""

    name = "pgqueuer"

    async def install(self) -> None:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        self.conns = [await asyncpg.connect(self.dsn) for _ in range(PRODUCER_TASKS)]
        self.queries = [Queries(AsyncpgDriver(c)) for c in self.conns]
        await self.queries[0].install()

    async def producer(self) -> Callable[[], Awaitable[None]]:
        free = list(self.queries)

        async def enqueue() -> None:
            queries = free.pop()
            try:
                await queries.enqueue("noop", None)
            finally:
                free.append(queries)

        return enqueue

    async def fill(self, count: int) -> None:
        for start in range(0, count, DRAIN_BATCH):
            n = min(DRAIN_BATCH, count - start)
            await self.queries[0].enqueue(["noop"] * n, [None] * n, [0] * n)

    async def left(self) -> int:
        return int(await self.conns[0].fetchval("SELECT count(*) FROM pgqueuer"))

    async def close(self) -> None:
        for conn in self.conns:
            await conn.close()


class ProcrastinatePeer(Peer):
    """procrastinate: psycopg, ``procrastinate_jobs`` rows marked succeeded."""

    name = "procrastinate"

    async def install(self) -> None:
        self.app = _procrastinate_app(self.dsn)

        @self.app.task(name="noop")  # type: ignore[attr-defined]
        async def noop() -> None:
            return None

        self.task = noop
        self.opened = self.app.open_async()  # type: ignore[attr-defined]
        await self.opened.__aenter__()
        await self.app.schema_manager.apply_schema_async()  # type: ignore[attr-defined]
        self.conn = await asyncpg.connect(self.dsn)

    async def producer(self) -> Callable[[], Awaitable[None]]:
        async def enqueue() -> None:
            await self.task.defer_async()

        return enqueue

    async def fill(self, count: int) -> None:
        for start in range(0, count, DRAIN_BATCH):
            n = min(DRAIN_BATCH, count - start)
            await self.task.batch_defer_async(*[{} for _ in range(n)])

    async def left(self) -> int:
        query = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        return int(await self.conn.fetchval(query))

    async def close(self) -> None:
        await self.conn.close()
        await self.opened.__aexit__(None, None, None)


def start_worker(
    peer: Peer, concurrency: int, first_path: Path, log: Path
) -> subprocess.Popen[bytes]:
    """The peer's worker as a process of its own (as deployed)."""
    args = [sys.executable, __file__, "--worker", peer.name, peer.dsn, str(concurrency)]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*args, str(first_path)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )


def stop(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)


async def until_done(peer: Peer, what: str, worker: subprocess.Popen[bytes]) -> float:
    """Wait until no job is left; return the wall-clock time it was seen so."""
    deadline = time.monotonic() + DEADLINE_S
    shown = time.monotonic()
    while True:
        if worker.poll() is not None:
            raise SystemExit(f"{peer.name} {what}: the worker exited ({worker.returncode})")
        left = await peer.left()
        if left == 0:
            return time.time()
        if time.monotonic() > deadline:
            raise SystemExit(f"{peer.name} {what}: {left} jobs still left after {DEADLINE_S:g}s")
        if time.monotonic() - shown >= 2:  # progress, every two seconds
            print(f"  {peer.name} {what}: {left:,} left", flush=True)
            shown = time.monotonic()
        await asyncio.sleep(0.01)


def _first_time(path: Path) -> float | None:
    text = path.read_text() if path.exists() else ""
    return float(text) if text else None


async def until_started(path: Path, within: float = 60.0) -> float:
    """The wall-clock time the worker ran its first job (it writes it to ``path``)."""
    deadline = time.monotonic() + within
    while (first := _first_time(path)) is None:
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not start a job")
        await asyncio.sleep(0.01)
    return first


async def run_peer(peer_type: type[Peer], args: argparse.Namespace, logs: Path) -> dict[str, float]:
    """Both cases for one peer, each on a scratch database of its own."""
    figures: dict[str, float] = {}
    async with scratch_database() as dsn:
        peer = peer_type(dsn)
        await peer.install()
        first = logs / f"{peer.name}-single.first"
        worker = start_worker(peer, args.concurrency, first, logs / f"{peer.name}.log")
        try:
            await asyncio.sleep(1.0)  # the worker is up and listening
            enqueue = await peer.producer()
            count = args.single_jobs // PRODUCER_TASKS * PRODUCER_TASKS
            started = time.time()

            async def task() -> None:
                for _ in range(count // PRODUCER_TASKS):
                    await enqueue()

            await asyncio.gather(*(task() for _ in range(PRODUCER_TASKS)))
            done = await until_done(peer, "producer+worker", worker)
            figures["producer_worker"] = count / (done - started)
        finally:
            stop(worker)
        print(f"{peer.name} producer+worker: {figures['producer_worker']:,.0f} jobs/s", flush=True)
        await peer.fill(args.jobs)
        first = logs / f"{peer.name}-drain.first"
        worker = start_worker(peer, args.concurrency, first, logs / f"{peer.name}.log")
        try:
            began = await until_started(first)
            done = await until_done(peer, "drain", worker)
            figures["drain"] = args.jobs / (done - began)
        finally:
            stop(worker)
        print(f"{peer.name} drain: {figures['drain']:,.0f} jobs/s", flush=True)
        await peer.close()
    return figures


def run_jobtrail(args: argparse.Namespace) -> dict[str, float]:
    """``bench/e2e.py`` with the same counts; its output shown, its BENCH lines returned."""
    command = [
        sys.executable,
        str(ROOT / "bench" / "e2e.py"),
        "--jobs",
        str(args.jobs),
        "--single-jobs",
        str(args.single_jobs),
        "--paced-seconds",
        str(args.paced_seconds),
    ]
    figures: dict[str, float] = {}
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as e2e:
        assert e2e.stdout is not None
        for line in e2e.stdout:
            print(f"  e2e | {line}", end="", flush=True)
            if match := BENCH.match(line.strip()):
                figures[match[1]] = float(match[2])
    if e2e.returncode != 0:
        raise SystemExit(f"bench/e2e.py failed with exit code {e2e.returncode}")
    return figures


async def main(args: argparse.Namespace) -> None:
    print(f"# {machine()}; jobs {args.jobs:,}, single {args.single_jobs:,}", flush=True)
    print("== jobtrail (bench/e2e.py)", flush=True)
    ours = run_jobtrail(args) if not args.peers_only else {}
    peers: dict[str, dict[str, float]] = {}
    folder = tempfile.mkdtemp(prefix="jobtrail-peers-")  # the workers' logs stay for a look
    print(f"# workers' logs: {folder}", flush=True)
    for peer_type in (PgQueuerPeer, ProcrastinatePeer):
        print(f"== {peer_type.name} (worker concurrency {args.concurrency})", flush=True)
        peers[peer_type.name] = await run_peer(peer_type, args, Path(folder))
    for name, figures in peers.items():
        bench_line(f"peers_{name}_producer_worker_jobs_per_s", figures["producer_worker"], "jobs/s")
        bench_line(f"peers_{name}_drain_jobs_per_s", figures["drain"], "jobs/s")
    if not ours:
        return
    single = ours["e2e_single_8tasks_jobs_per_s"]
    flood = ours["e2e_jobs_per_s"]
    bench_line("e2e_single_8tasks_jobs_per_s", single, "jobs/s")
    bench_line("e2e_jobs_per_s", flood, "jobs/s")
    if "e2e_latency_p99_ms" in ours:
        bench_line("e2e_latency_p99_ms", ours["e2e_latency_p99_ms"], "ms")
    bench_line("e2e_vs_pgqueuer_ratio", single / peers["pgqueuer"]["producer_worker"], "x")
    bench_line("flood_vs_pgqueuer_drain_ratio", flood / peers["pgqueuer"]["drain"], "x")
    bench_line(
        "e2e_vs_procrastinate_ratio", single / peers["procrastinate"]["producer_worker"], "x"
    )


def worker_main(argv: list[str]) -> None:
    """``peers.py --worker NAME DSN CONCURRENCY FIRST_PATH``: run one peer's worker."""
    name, dsn, concurrency, first_path = argv
    run = {"pgqueuer": pgqueuer_worker, "procrastinate": procrastinate_worker}[name]
    asyncio.run(run(dsn, int(concurrency), first_path))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2:])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs of the drain / flood case")
    parser.add_argument("--single-jobs", type=int, default=2000, help="producer+worker jobs")
    parser.add_argument("--concurrency", type=int, default=10, help="peers' worker concurrency")
    parser.add_argument("--paced-seconds", type=float, default=8.0, help="e2e.py's paced phase")
    parser.add_argument("--peers-only", action="store_true", help="skip jobtrail (a quick look)")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(parser.parse_args()))
