"""End to end: enqueue → relay → qstash_local → host → JobCompleted, with a no-op handler.

    python bench/e2e.py [--jobs 5000] [--batch 500] [--paced-seconds 8] [--profile DIR]

Three processes on loopback, as deployed: qstash_local (``jobtrail qstash-dev``), the host
(``jobtrail serve --no-qstash``, which runs the relay in-process) and this producer, all on
one scratch database. Phases, each waiting until its last job is completed:

* warm-up: a few hundred jobs (connections, caches, prepared statements);
* flood: ``--jobs`` jobs through ``enqueue_many`` in batches of ``--batch``, as fast as the
  producer goes: the throughput figure (first ``JobDispatched`` to last ``JobCompleted``,
  by the log's own ``recorded_at``);
* paced: ``enqueue_many`` in small batches at half the flood's rate for
  ``--paced-seconds``: the latency figures (a flood only measures queueing behind itself);
* single: ``--single-jobs`` jobs through ``enqueue`` from 8 concurrent tasks.

Every benchmarked job must have exactly dispatched → started → completed in its stream.
The CPU time of each process (host, qstash_local, this producer, the database's backends)
is sampled around every phase and printed per job; ``--profile DIR`` also records the
host, qstash_local and this process with py-spy during the flood (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # not bench/qstash_local.py

import aiohttp
import asyncpg

import jobstore
import qstash_local
from bench.common import Timer, bench_line, percentile, scratch_database
from bench.e2e_app import NOOP, registry
from jobstore import Dispatcher, JobRequest
from jobstore.database import init_connection

ROOT = Path(__file__).resolve().parents[1]
JOBTRAIL = [sys.executable, "-c", "from workers.cli import main; main()"]
PHASE_DEADLINE_S = 90.0
Producer = Callable[[list[str]], Coroutine[Any, Any, None]]
"""Enqueues a phase's jobs, appending their ids to the list it is given."""
BENCH_APPLICATION = "jobtrail-bench-producer"
HISTORY = ["job.dispatched", "job.started", "job.completed"]
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

# -- processes ---------------------------------------------------------------------------


class Child:
    """One subprocess of the benchmark, its output in a log file; stopped by its own pid."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        """Start the process (in its own session, so a Ctrl-C here does not reach it)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        """The process id (the process must have been started)."""
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, within: float = 15.0) -> None:
        """Send ``sig`` and wait; SIGKILL if it is still alive after ``within`` seconds."""
        if not self.running():
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def output(self, tail: int = 4000) -> str:
        """The end of what the process wrote so far."""
        return self.log.read_text(errors="replace")[-tail:]


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to register subprocesses in; every one is stopped when the block ends."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            with contextlib.suppress(Exception):
                child.stop()


def free_port() -> int:
    """A loopback port that was free a moment ago (the host needs its URL before it starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(**values: str) -> dict[str, str]:
    """This environment without QStash or jobtrail settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSTASH_", "JOBTRAIL_"))}
    env.update(values)
    return env


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    """Poll ``check`` until it is true; RuntimeError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {within:.0f} s")
        await asyncio.sleep(0.1)


async def http_ok(session: aiohttp.ClientSession, url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        async with session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def start_qstash(started: list[Child], logs: Path) -> tuple[Child, str]:
    """qstash_local as ``jobtrail qstash-dev --port 0``; returns it and its URL."""
    child = Child(
        "qstash_local",
        [*JOBTRAIL, "qstash-dev", "--port", "0"],
        child_env(JOBTRAIL_LOG_LEVEL="warning"),
        logs / "qstash_local.log",
    )
    started.append(child.start())
    url = ""

    async def listening() -> bool:
        nonlocal url
        if not child.running():
            raise RuntimeError(f"qstash_local exited:\n{child.output()}")
        match = re.search(r"^QSTASH_URL=(\S+)$", child.output(), re.MULTILINE)
        url = match[1] if match else ""
        return bool(url)

    await wait_for("qstash_local listening", listening)
    return child, url


async def start_host(
    started: list[Child], logs: Path, dsn: str, qstash_url: str, args: argparse.Namespace
) -> tuple[Child, str]:
    """The host as ``jobtrail serve --no-qstash``; returns it once /readyz answers 200."""
    port = free_port()
    env = child_env(
        DATABASE_URL=dsn,
        QSTASH_URL=qstash_url,
        QSTASH_TOKEN=qstash_local.DEV_TOKEN,
        JOBTRAIL_APP=args.host_app,
        JOBTRAIL_LOG_LEVEL="warning",
        JOBTRAIL_SWEEP_INTERVAL="3600",
    )
    if args.host_pool is not None:
        env["JOBTRAIL_POOL_MAX_SIZE"] = str(args.host_pool)
    child = Child(
        "host",
        [*JOBTRAIL, "serve", "--port", str(port), "--no-qstash", "--grace", "5"],
        env,
        logs / "host.log",
    )
    started.append(child.start())
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            if not child.running():
                raise RuntimeError(f"the host exited:\n{child.output()}")
            return await http_ok(session, url + "/readyz")

        await wait_for("host ready", ready)
    return child, url


# -- CPU accounting ----------------------------------------------------------------------


def proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid``; None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def run_queue_wait(pid: int) -> float:
    """Seconds the main thread of ``pid`` spent runnable but waiting for a CPU (0 if unknown)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuSample:
    """CPU seconds per process (and per database backend) at one moment."""

    at: float
    processes: dict[str, float]
    backends: dict[int, tuple[str, float]] = field(default_factory=dict)
    wal_writer: float = 0.0
    waits: dict[str, float] = field(default_factory=dict)
    machine: tuple[int, int] = (0, 0)


class CpuMeter:
    """Samples the CPU time of the benchmark's processes and of its database backends."""

    def __init__(self, pool: asyncpg.Pool, named: dict[str, int]) -> None:
        self.pool, self.named = pool, named

    async def sample(self) -> CpuSample:
        """CPU seconds now, per process; database backends by who they serve."""
        processes = {"bench (producer)": time.process_time()}
        waits = {"bench (producer)": run_queue_wait(os.getpid())}
        for name, pid in self.named.items():
            processes[name] = proc_cpu(pid) or 0.0
            waits[name] = run_queue_wait(pid)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT pid, datname = current_database() AS ours,"
                "       application_name = $1 AS producer"
                "  FROM pg_stat_activity"
                " WHERE datname = current_database() OR backend_type = 'walwriter'",
                BENCH_APPLICATION,
            )
        backends: dict[int, tuple[str, float]] = {}
        wal = 0.0
        for row in rows:
            used = proc_cpu(row["pid"])
            if used is None:
                continue
            if row["ours"]:
                who = "PG for producer" if row["producer"] else "PG for host"
                backends[row["pid"]] = (who, used)
            else:
                wal += used
        return CpuSample(time.perf_counter(), processes, backends, wal, waits, machine_ticks())

    @staticmethod
    def contention(before: CpuSample, after: CpuSample, ours: float) -> str:
        """How busy the whole machine was, and how long our processes waited for a CPU."""
        wall = after.at - before.at
        busy = after.machine[0] - before.machine[0]
        total = after.machine[1] - before.machine[1]
        cores = os.cpu_count() or 1
        waited = ", ".join(
            f"{name} {(after.waits[name] - before.waits.get(name, 0.0)) / wall:.0%}"
            for name in after.waits
        )
        machine = busy / total * cores if total else 0.0
        return (
            f"machine busy {machine:.2f} of {cores} cores, of which these processes "
            f"{ours:.2f}; main threads waited for a CPU: {waited} of the time"
        )

    @staticmethod
    def per_job(before: CpuSample, after: CpuSample, jobs: int) -> list[tuple[str, float, float]]:
        """(process, µs of CPU per job, share of one core) between two samples."""
        wall = after.at - before.at
        used = {k: v - before.processes.get(k, 0.0) for k, v in after.processes.items()}
        for who in ("PG for host", "PG for producer"):
            used[who] = sum(
                v - before.backends.get(pid, (who, 0.0))[1]
                for pid, (w, v) in after.backends.items()
                if w == who
            )
        used["PG walwriter"] = after.wal_writer - before.wal_writer
        return [(k, v / jobs * 1e6, v / wall) for k, v in used.items()]


def print_cpu(label: str, rows: list[tuple[str, float, float]]) -> None:
    """One line per process: CPU per job and how busy it kept a core."""
    total = sum(us for _, us, _ in rows)
    print(
        f"  CPU per job, {label} (total {total:,.0f} µs/job; 2 cores allow at most "
        f"{2e6 / total:,.0f} jobs/s at this cost):",
        flush=True,
    )
    for name, us, busy in rows:
        print(f"    {name:<22} {us:7,.0f} µs/job   {busy:6.0%} of a core", flush=True)


# -- phases ------------------------------------------------------------------------------


@dataclass
class Result:
    """What the log says about one phase's jobs."""

    jobs: int
    jobs_per_s: float
    latencies_ms: list[float]
    to_published_ms: list[float]
    to_started_ms: list[float]
    started_to_completed_ms: list[float]
    enqueue_s: float
    cpu: list[tuple[str, float, float]]
    context: str


async def completed_after(pool: asyncpg.Pool, position: int) -> int:
    """How many job.completed events the log holds after ``position``."""
    async with pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM jobtrail.events"
            " WHERE position > $1 AND event_type = 'job.completed'",
            position,
        )
        return count


async def verify(pool: asyncpg.Pool, job_ids: list[str]) -> list[asyncpg.Record]:
    """Each job's event types and timestamps; RuntimeError unless every history is complete."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT e.stream_id,"
            "       array_agg(e.event_type ORDER BY e.version) AS types,"
            "       min(e.recorded_at) FILTER (WHERE e.event_type = 'job.dispatched') AS d,"
            "       min(e.recorded_at) FILTER (WHERE e.event_type = 'job.started') AS s,"
            "       min(e.recorded_at) FILTER (WHERE e.event_type = 'job.completed') AS c,"
            "       min(m.published_at) AS p"
            "  FROM jobtrail.events e"
            "  LEFT JOIN jobtrail.relay_messages m"
            "    ON m.job_id = substr(e.stream_id, 5) AND m.dispatch = 1"
            " WHERE e.stream_id = ANY($1::text[])"
            " GROUP BY e.stream_id",
            [f"job-{j}" for j in job_ids],
        )
    bad = [r for r in rows if list(r["types"]) != HISTORY]
    missing = len(set(job_ids)) - len(rows)
    if bad or missing or len(set(job_ids)) != len(job_ids):
        sample = ", ".join(f"{r['stream_id']}: {list(r['types'])}" for r in bad[:5])
        raise RuntimeError(
            f"{len(bad)} job(s) with a wrong history, {missing} without any event: {sample}"
        )
    return list(rows)


async def run_phase(
    name: str,
    pool: asyncpg.Pool,
    meter: CpuMeter,
    produce: Producer,
    expected: int,
    on_done: Callable[[], Awaitable[None]] | None = None,
) -> Result:
    """Run ``produce`` (which appends the ids it enqueued) and wait until all are completed."""
    async with pool.acquire() as conn:
        start: int = await conn.fetchval("SELECT coalesce(max(position), 0) FROM jobtrail.events")
    before = await meter.sample()
    job_ids: list[str] = []
    timer = Timer()
    producer = asyncio.create_task(produce(job_ids))
    enqueue_s = 0.0
    last_print = 0.0
    done = 0
    try:
        while True:
            await asyncio.sleep(0.2)
            if producer.done() and not enqueue_s:
                producer.result()  # raise the producer's error, if any
                enqueue_s = timer.elapsed
            done = await completed_after(pool, start)
            if producer.done() and done >= expected:
                break
            if timer.elapsed - last_print >= 1.0:
                last_print = timer.elapsed
                print(
                    f"  {name}: {timer.elapsed:5.1f} s, enqueued {len(job_ids):,}, "
                    f"completed {done:,}/{expected:,}",
                    flush=True,
                )
            if timer.elapsed > PHASE_DEADLINE_S:
                raise RuntimeError(
                    f"{name}: only {done:,} of {expected:,} jobs completed "
                    f"within {PHASE_DEADLINE_S:.0f} s"
                )
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer
    after = await meter.sample()
    if on_done is not None:
        await on_done()
    rows = await verify(pool, job_ids)
    first = min(r["d"] for r in rows)
    last = max(r["c"] for r in rows)

    def ms(a: str, b: str) -> list[float]:
        return [(r[b] - r[a]).total_seconds() * 1000 for r in rows if r[a] and r[b]]

    cpu = CpuMeter.per_job(before, after, len(rows))
    result = Result(
        jobs=len(rows),
        jobs_per_s=len(rows) / (last - first).total_seconds(),
        latencies_ms=ms("d", "c"),
        to_published_ms=ms("d", "p"),
        to_started_ms=ms("d", "s"),
        started_to_completed_ms=ms("s", "c"),
        enqueue_s=enqueue_s,
        cpu=cpu,
        context=CpuMeter.contention(before, after, sum(busy for _, _, busy in cpu)),
    )
    report(name, result)
    return result


def report(name: str, result: Result) -> None:
    """Human lines for one phase."""

    def p(samples: list[float]) -> str:
        if len(samples) < 2:
            return "n/a"
        return f"p50 {percentile(samples, 50):,.0f} ms, p99 {percentile(samples, 99):,.0f} ms"

    print(
        f"{name}: {result.jobs:,} jobs, each dispatched → started → completed; "
        f"{result.jobs_per_s:,.0f} jobs/s end to end "
        f"(enqueued in {result.enqueue_s:.2f} s)",
        flush=True,
    )
    print(f"  enqueue → completed: {p(result.latencies_ms)}", flush=True)
    print(f"  enqueue → relay saved its checkpoint: {p(result.to_published_ms)}", flush=True)
    print(f"  enqueue → started: {p(result.to_started_ms)}", flush=True)
    print(f"  started → completed: {p(result.started_to_completed_ms)}", flush=True)
    print_cpu(name, result.cpu)
    print(f"  {result.context}", flush=True)


def flood(dispatcher: Dispatcher, count: int, batch: int) -> Producer:
    """``enqueue_many`` of ``count`` no-op jobs in batches of ``batch``, back to back."""

    async def produce(ids: list[str]) -> None:
        for start in range(0, count, batch):
            size = min(batch, count - start)
            ids += await dispatcher.enqueue_many([JobRequest(NOOP, {})] * size)

    return produce


def paced(dispatcher: Dispatcher, rate: float, seconds: float) -> Producer:
    """``enqueue_many`` at ``rate`` jobs/s for ``seconds``, a small batch every 20 ms."""
    tick = 0.02

    async def produce(ids: list[str]) -> None:
        start = time.perf_counter()
        due = 0.0
        sent = 0
        total = round(rate * seconds)
        while sent < total:
            due += rate * tick
            size = min(total - sent, int(due) - sent)
            if size > 0:
                ids += await dispatcher.enqueue_many([JobRequest(NOOP, {})] * size)
                sent += size
            ticks = (time.perf_counter() - start) / tick
            await asyncio.sleep(max(0.0, (int(ticks) + 1 - ticks) * tick))
            due = rate * (time.perf_counter() - start)

    return produce


def single(dispatcher: Dispatcher, count: int, tasks: int = 8) -> Producer:
    """``enqueue`` one job at a time from ``tasks`` concurrent tasks."""

    async def produce(ids: list[str]) -> None:
        async def worker(n: int) -> None:
            for _ in range(n):
                ids.append(await dispatcher.enqueue(NOOP, {}))

        await asyncio.gather(*(worker(count // tasks) for _ in range(tasks)))

    return produce


async def deliveries(host_url: str) -> str:
    """The host's delivery counters by outcome (its /metrics), e.g. ``completed=5300``."""
    async with aiohttp.ClientSession() as session, session.get(host_url + "/metrics") as r:
        text = await r.text()
    counts: Counter[str] = Counter()
    for match in re.finditer(
        r'^jobtrail_deliveries_total\{[^}]*outcome="([^"]+)"\} (\S+)$', text, re.MULTILINE
    ):
        counts[match[1]] += int(float(match[2]))
    return ", ".join(f"{k}={v:,}" for k, v in sorted(counts.items())) or "none"


# -- profiling ---------------------------------------------------------------------------


class Profiler:
    """py-spy recording chosen processes while a phase runs (raw collapsed stacks)."""

    def __init__(self, out: Path | None, targets: dict[str, int], logs: Path) -> None:
        self.out, self.targets, self.logs = out, targets, logs
        self.spies: list[tuple[str, Path, Child]] = []

    def start(self) -> None:
        """Attach py-spy to every target (nothing when profiling is off)."""
        if self.out is None:
            return
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if spy is None:
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.out.mkdir(parents=True, exist_ok=True)
        for name, pid in self.targets.items():
            path = self.out / f"{name}.txt"
            args = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
            child = Child(
                f"py-spy {name}",
                [*args, "--nonblocking", "-o", str(path)],
                dict(os.environ),
                self.logs / f"py-spy-{name}.log",
            )
            self.spies.append((name, path, child.start()))

    async def stop(self) -> None:
        """Stop every py-spy (SIGINT makes it write its file) and summarise the profiles."""
        for _, _, child in self.spies:
            child.stop(signal.SIGINT, within=20)
        for name, path, child in self.spies:
            if path.exists():
                summarise(name, path)
            else:
                print(f"  profile of {name}: none written\n{child.output(800)}", flush=True)
        self.spies.clear()


# Where a process's samples go: the first rule whose pattern matches the stack wins.
CATEGORIES: dict[str, list[tuple[str, str]]] = {
    "host": [
        ("asyncpg pool release: reset query", r"PoolConnectionHolder\.release|Connection\.reset "),
        ("relay: publish (qstash SDK, httpx)", r"Relay\._publish_all|Relay\._retrying"),
        ("relay: read log, decode, checkpoint", r"Relay\."),
        ("delivery: signature check (PyJWT)", r"Verifier\.verify"),
        ("delivery: load = decode + fold", r"Dispatcher\.load.*;(decode|evolve|fold|_record) \("),
        ("delivery: load = read_stream query", r"Dispatcher\.load"),
        ("delivery: append (batcher, encode, query)", r"EventStore\.append|AppendBatcher"),
        ("delivery: handler, log, metrics, answer", r"create_job_worker"),
        ("aiohttp server: parse, write response", r"web_protocol|http_parser|http_writer"),
        ("asyncpg: protocol, results", r"asyncpg"),
    ],
    "qstash_local": [
        ("deliver: aiohttp client", r"aiohttp/client|client_reqrep|client_proto|connector"),
        ("deliver: sign JWT", r"qstash_local/signature"),
        ("publish API: parse batch, create messages", r"qstash_local/(api|publisher|spec)"),
        ("dispatcher, state, event log", r"qstash_local/"),
        ("aiohttp server: parse, write response", r"web_protocol|http_parser|http_writer"),
    ],
    "bench": [
        ("enqueue_many: encode, append", r"EventStore\."),
        ("enqueue_many: validate, build events", r"Dispatcher\.enqueue|_dispatched"),
        ("polling, CPU sampling", r"completed_after|CpuMeter|run_phase"),
        ("asyncpg: protocol, results", r"asyncpg"),
    ],
}


def summarise(name: str, path: Path, top: int = 10) -> None:
    """Where the busy samples of a py-spy raw profile went: by category, then by function."""
    rules = [(label, re.compile(pattern)) for label, pattern in CATEGORIES.get(name, [])]
    own: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        own[_short(stack.rpartition(";")[2])] += count
        label = next((lbl for lbl, rx in rules if rx.search(stack)), "event loop, socket I/O, rest")
        categories[label] += count
    if not total:
        print(f"  profile of {name}: no samples", flush=True)
        return
    print(f"  profile of {name}: {total:,} busy samples ({path})", flush=True)
    for label, count in categories.most_common():
        print(f"    {count / total:6.1%}  {label}", flush=True)
    print("    top functions by self time:", flush=True)
    for frame, count in own.most_common(top):
        print(f"      {count / total:6.1%}  {frame}", flush=True)


def _short(frame: str) -> str:
    """``func (…/site-packages/pkg/mod.py:12)`` → ``func (pkg/mod.py)``."""
    match = re.match(r"^(.*) \((.*?):\d+\)$", frame)
    if not match:
        return frame
    where = re.sub(r"^.*/(site-packages|lib/python3\.\d+|main)/", "", match[2])
    return f"{match[1]} ({where})"


# -- main --------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="jobtrail-e2e-") as tmp, children() as started:
        logs = Path(tmp)
        try:
            async with scratch_database() as dsn:
                qstash, qstash_url = await start_qstash(started, logs)
                host, host_url = await start_host(started, logs, dsn, qstash_url, args)
                print(
                    f"# qstash_local {qstash_url} (pid {qstash.pid}), "
                    f"host {host_url} (pid {host.pid})",
                    flush=True,
                )
                pool = await asyncpg.create_pool(
                    dsn,
                    min_size=2,
                    max_size=8,
                    init=init_connection,
                    server_settings={"application_name": BENCH_APPLICATION},
                )
                try:
                    await benchmark(args, pool, qstash, host, host_url, logs, results)
                finally:
                    await pool.close()
                    for child in reversed(started):
                        child.stop()  # before the scratch database is dropped
        except BaseException:
            for child in started:
                print(f"--- {child.name} output ---\n{child.output()}", file=sys.stderr)
            raise
    flood_result = results["flood"]
    latency = results.get("paced", flood_result)
    bench_line("e2e_jobs_per_s", flood_result.jobs_per_s, "jobs/s")
    bench_line("e2e_latency_p50_ms", percentile(latency.latencies_ms, 50), "ms")
    bench_line("e2e_latency_p99_ms", percentile(latency.latencies_ms, 99), "ms")
    if "single" in results:
        bench_line("e2e_single_8tasks_jobs_per_s", results["single"].jobs_per_s, "jobs/s")


async def benchmark(
    args: argparse.Namespace,
    pool: asyncpg.Pool,
    qstash: Child,
    host: Child,
    host_url: str,
    logs: Path,
    results: dict[str, Result],
) -> None:
    dispatcher = Dispatcher(jobstore.EventStore(pool), registry())
    meter = CpuMeter(pool, {"host": host.pid, "qstash_local": qstash.pid})
    await run_phase("warm-up", pool, meter, flood(dispatcher, args.warmup, 100), args.warmup)
    profiler = Profiler(
        args.profile,
        {"host": host.pid, "qstash_local": qstash.pid, "bench": os.getpid()},
        logs,
    )
    profiler.start()
    try:
        results["flood"] = await run_phase(
            "flood",
            pool,
            meter,
            flood(dispatcher, args.jobs, args.batch),
            args.jobs,
            on_done=profiler.stop,
        )
    finally:
        await profiler.stop()
    if args.paced_seconds > 0:
        rate = args.paced_rate or max(50.0, round(results["flood"].jobs_per_s / 2, -1))
        count = round(rate * args.paced_seconds)
        print(f"paced: {rate:,.0f} jobs/s for {args.paced_seconds:g} s", flush=True)
        results["paced"] = await run_phase(
            "paced", pool, meter, paced(dispatcher, rate, args.paced_seconds), count
        )
    if args.single_jobs > 0:
        count = args.single_jobs // 8 * 8
        results["single"] = await run_phase(
            "single (enqueue from 8 tasks)", pool, meter, single(dispatcher, count), count
        )
    print(f"host deliveries: {await deliveries(host_url)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs in the flood phase")
    parser.add_argument("--batch", type=int, default=500, help="jobs per enqueue_many call")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up jobs")
    parser.add_argument("--paced-seconds", type=float, default=8.0, help="0 skips the phase")
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=0.0,
        help="jobs/s of the paced phase (default: half the flood's rate)",
    )
    parser.add_argument("--single-jobs", type=int, default=2000, help="0 skips the phase")
    parser.add_argument(
        "--host-pool",
        type=int,
        default=None,
        help="the host's JOBTRAIL_POOL_MAX_SIZE (default: the host's own)",
    )
    parser.add_argument(
        "--host-app",
        default="bench.e2e_app:registry",
        help="the host's JOBTRAIL_APP (a registry with the noop job type)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record py-spy profiles of every process during the flood here",
    )
    asyncio.run(main(parser.parse_args()))
