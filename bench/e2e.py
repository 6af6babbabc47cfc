"""End to end: enqueue → relay → qstash_local → host → JobCompleted, with a no-op handler.

    python bench/e2e.py [--jobs 5000] [--batch 500] [--paced-seconds 8] [--profile DIR]
                        [--hosts 2] [--costs [--cost-jobs 1000]]

Three processes on loopback, as deployed: qstash_local (``jobtrail qstash-dev``), the host
(``jobtrail serve --no-qstash``, which runs the relay in-process) and this producer, all on
one scratch database. Phases, each waiting until its last job is completed and then until
every follower of the log (relay, notifier, projections) has applied it, so that no phase
pays for another's catching up:

* warm-up: a few hundred jobs (connections, caches, prepared statements);
* flood: ``--jobs`` jobs through ``enqueue_many`` in batches of ``--batch``, as fast as the
  producer goes: the throughput figure (first ``JobDispatched`` to last ``JobCompleted``,
  by the log's own ``recorded_at``);
* paced: ``enqueue_many`` in small batches at half the flood's rate for
  ``--paced-seconds``: the latency figures (a flood only measures queueing behind itself);
* single: ``--single-jobs`` jobs through ``enqueue`` from 8 concurrent tasks.

``--hosts N`` puts N hosts behind Debian's haproxy (``JOBTRAIL_PUBLIC_URL`` is the
balancer's): a flood on the first host alone (``e2e_1host_jobs_per_s``), then the others
start and every phase runs on all of them (``e2e_Nhosts_jobs_per_s``); last, a flood during
which the first host is SIGKILLed: every job must still end exactly once (abandoned
attempts allowed), the relay and the projections failing over to a survivor.  ``--costs`` prices
each guarantee as deployed: floods with it on and off, alternating, three rounds
(``cost_<feature>_us_per_job``, the median gap in CPU per job across every process).

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
import statistics
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
from aiohttp import web

import jobstore
import projections
import qstash_local
from bench.common import Timer, bench_line, haproxy_config, percentile, scratch_database
from bench.e2e_app import NOOP, PERSONAL, registry
from jobstore import Dispatcher, JobRequest, audit
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
    started: list[Child],
    logs: Path,
    dsn: str,
    qstash_url: str,
    args: argparse.Namespace,
    *,
    name: str = "host",
    port: int | None = None,
    public_url: str | None = None,
) -> tuple[Child, str]:
    """The host as ``jobtrail serve --no-qstash``; returns it once /readyz answers 200.

    ``public_url`` is where QStash delivers (the balancer's URL with several hosts).
    """
    port = port or free_port()
    env = child_env(
        DATABASE_URL=dsn,
        QSTASH_URL=qstash_url,
        QSTASH_TOKEN=qstash_local.DEV_TOKEN,
        JOBTRAIL_APP=args.host_app,
        JOBTRAIL_LOG_LEVEL="warning",
        JOBTRAIL_SWEEP_INTERVAL="3600",
        # --costs' callbacks go to a receiver in the bench, on loopback (existing settings)
        JOBTRAIL_WEBHOOK_ALLOW_PRIVATE="true",
        JOBTRAIL_WEBHOOK_PORTS="*",
    )
    if public_url is not None:
        env["JOBTRAIL_PUBLIC_URL"] = public_url
    if args.host_pool is not None:
        env["JOBTRAIL_POOL_MAX_SIZE"] = str(args.host_pool)
    child = Child(
        name,
        [*JOBTRAIL, "serve", "--port", str(port), "--no-qstash", "--grace", "5"],
        env,
        logs / f"{name}.log",
    )
    started.append(child.start())
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            if not child.running():
                raise RuntimeError(f"{name} exited:\n{child.output()}")
            return await http_ok(session, url + "/readyz")

        await wait_for(f"{name} ready", ready)
    return child, url


async def start_balancer(started: list[Child], logs: Path, ports: list[int]) -> str:
    """Debian's haproxy in the foreground over the hosts' ``ports``; returns its URL."""
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if haproxy is None:
        raise RuntimeError("--hosts above 1 needs haproxy: apt-get install -y haproxy")
    port = free_port()
    config = logs / "haproxy.cfg"
    config.write_text(haproxy_config(port, [f"127.0.0.1:{p}" for p in ports]))
    child = Child(
        "haproxy", [haproxy, "-f", str(config), "-db"], dict(os.environ), logs / "haproxy.log"
    )
    started.append(child.start())
    return f"http://127.0.0.1:{port}"


async def balanced() -> None:
    """Give haproxy time to see a host that just became ready (rise 2 × inter 500 ms)."""
    await asyncio.sleep(1.5)


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
        used = {  # a process killed meanwhile (failover) reads 0: left out
            k: v - before.processes.get(k, 0.0) for k, v in after.processes.items() if v
        }
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


async def completed_after(pool: asyncpg.Pool, position: int, last: str = HISTORY[-1]) -> int:
    """How many ``last`` events (job.completed) the log holds after ``position``."""
    async with pool.acquire() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM jobtrail.events WHERE position > $1 AND event_type = $2",
            position,
            last,
        )
        return count


FAILED_OVER = ["job.dispatched", "…", "job.completed"]
"""A history through a host that died: any attempts abandoned before one completion."""


async def settle(pool: asyncpg.Pool, phase: str) -> None:
    """Wait until every follower of the log (relay, notifier, projections) has applied it.

    A phase ends when its jobs completed, but the followers may still be behind: without
    this, their catching up would be counted as the next phase's CPU and would slow its
    jobs (a paced phase right after a flood ran while the projections worked off the
    flood's backlog)."""
    head = await jobstore.EventStore(pool).last_position()
    names = [r["name"] for r in await pool.fetch("SELECT name FROM jobtrail.checkpoints")]
    try:
        await projections.wait_for_position(pool, head, timeout=PHASE_DEADLINE_S, names=names)
    except (projections.ProjectionTimeoutError, projections.ProjectionFailed) as exc:
        print(f"  {phase}: the log's followers did not settle: {exc}", flush=True)


def matches(types: list[str], history: list[str]) -> bool:
    """Whether a job's event types are ``history`` (or end once after a failover)."""
    if history is FAILED_OVER:
        ends = [t for t in types if t in ("job.completed", "job.failed", "job.cancelled")]
        return types[0] == "job.dispatched" and ends == ["job.completed"] == types[-1:]
    return types == history


async def verify(
    pool: asyncpg.Pool, job_ids: list[str], history: list[str] = HISTORY
) -> list[asyncpg.Record]:
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
    bad = [r for r in rows if not matches(list(r["types"]), history)]
    missing = len(set(job_ids)) - len(rows)
    if bad or missing or len(set(job_ids)) != len(job_ids):
        sample = ", ".join(f"{r['stream_id']}: {list(r['types'])}" for r in bad[:5])
        raise RuntimeError(
            f"{len(bad)} job(s) with a wrong history, {missing} without any event: {sample}"
        )
    return list(rows)


STALL_S = 5.0
"""Seconds without a completion, everything enqueued, before a phase reports what waits."""


async def report_stall(pool: asyncpg.Pool, name: str, start: int, last_type: str) -> None:
    """Print what a stalled phase's unfinished jobs and the database's sessions are doing."""
    async with pool.acquire() as conn:
        jobs = await conn.fetch(
            "SELECT stream_id, array_agg(event_type ORDER BY version) AS events,"
            " max(recorded_at) AS last_at FROM jobtrail.events"
            " WHERE position > $1 AND stream_id LIKE 'job-%' GROUP BY stream_id"
            " HAVING NOT bool_or(event_type = $2) ORDER BY 3 LIMIT 20",
            start,
            last_type,
        )
        sessions = await conn.fetch(
            "SELECT pid, application_name, state, wait_event_type, wait_event,"
            " round(extract(epoch FROM now() - xact_start)::numeric, 1) AS xact_s,"
            " left(query, 160) AS query FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state <> 'idle' ORDER BY xact_start"
        )
        waits = await conn.fetch(
            "SELECT pid, locktype, mode, objid FROM pg_locks WHERE NOT granted"
        )
    print(f"  {name}: STALLED for {STALL_S:.0f} s; unfinished jobs (oldest first):", flush=True)
    for row in jobs:
        print(f"    {row['stream_id']} {list(row['events'])} last {row['last_at']}", flush=True)
    for row in sessions:
        print(f"    session {dict(row)}", flush=True)
    for row in waits:
        print(f"    lock wait {dict(row)}", flush=True)


async def run_phase(
    name: str,
    pool: asyncpg.Pool,
    meter: CpuMeter,
    produce: Producer,
    expected: int,
    on_done: Callable[[], Awaitable[None]] | None = None,
    history: list[str] = HISTORY,
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
    moved = (0, 0.0)  # completions seen, and when that count last changed
    reported = False
    try:
        while True:
            await asyncio.sleep(0.2)
            if producer.done() and not enqueue_s:
                producer.result()  # raise the producer's error, if any
                enqueue_s = timer.elapsed
            done = await completed_after(pool, start, history[-1])
            if producer.done() and done >= expected:
                break
            if done != moved[0]:
                moved = (done, timer.elapsed)
            elif producer.done() and not reported and timer.elapsed - moved[1] > STALL_S:
                reported = True  # once per phase: what the unfinished jobs wait on
                await report_stall(pool, name, start, history[-1])
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
    await settle(pool, name)
    after = await meter.sample()
    if on_done is not None:
        await on_done()
    rows = await verify(pool, job_ids, history)
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
    report(
        name,
        result,
        "ended exactly once"
        if history is FAILED_OVER
        else " → ".join(t.removeprefix("job.") for t in history),
    )
    return result


def report(name: str, result: Result, ends: str = "dispatched → started → completed") -> None:
    """Human lines for one phase."""

    def p(samples: list[float]) -> str:
        if len(samples) < 2:
            return "n/a"
        return f"p50 {percentile(samples, 50):,.0f} ms, p99 {percentile(samples, 99):,.0f} ms"

    print(
        f"{name}: {result.jobs:,} jobs, each {ends}; "
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


def flood(
    dispatcher: Dispatcher,
    count: int,
    batch: int,
    job_type: str = NOOP,
    payload: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> Producer:
    """``enqueue_many`` of ``count`` no-op jobs in batches of ``batch``, back to back."""
    request = JobRequest(job_type, payload or {}, options=options)

    async def produce(ids: list[str]) -> None:
        for start in range(0, count, batch):
            size = min(batch, count - start)
            ids += await dispatcher.enqueue_many([request] * size)

    return produce


def killing(
    dispatcher: Dispatcher, pool: asyncpg.Pool, count: int, batch: int, victim: Child
) -> Producer:
    """A flood; once a third of it completed, ``victim`` is SIGKILLed (deliveries in flight)."""
    enqueue = flood(dispatcher, count, batch)

    async def produce(ids: list[str]) -> None:
        async with pool.acquire() as conn:
            start = await conn.fetchval("SELECT coalesce(max(position), 0) FROM jobtrail.events")
        await enqueue(ids)

        async def a_third_done() -> bool:
            return await completed_after(pool, start) >= count // 3

        await wait_for("a third of the jobs to complete", a_third_done, PHASE_DEADLINE_S)
        victim.stop(signal.SIGKILL)
        print(f"  killed {victim.name} (pid {victim.pid})", flush=True)

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
    rules = [
        (label, re.compile(pattern))
        for label, pattern in CATEGORIES.get(name.rstrip("0123456789"), [])
    ]
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
    costs: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="jobtrail-e2e-") as tmp, children() as started:
        logs = Path(tmp)
        try:
            async with scratch_database() as dsn:
                qstash, qstash_url = await start_qstash(started, logs)
                ports = [free_port() for _ in range(args.hosts)]
                public_url = None
                if args.hosts > 1:
                    public_url = await start_balancer(started, logs, ports)

                async def host(n: int) -> Child:
                    child, url = await start_host(
                        started,
                        logs,
                        dsn,
                        qstash_url,
                        args,
                        name=f"host{n + 1}" if args.hosts > 1 else "host",
                        port=ports[n],
                        public_url=public_url,
                    )
                    print(f"# {child.name} {url} (pid {child.pid})", flush=True)
                    return child

                first = await host(0)
                print(
                    f"# qstash_local {qstash_url} (pid {qstash.pid}); "
                    f"deliveries to {public_url or 'the host'}",
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
                    stack = Stack(qstash, [first], ports, host)
                    await benchmark(args, pool, stack, logs, results, costs)
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
    bench_line(
        "e2e_1host_jobs_per_s", results.get("flood_1host", flood_result).jobs_per_s, "jobs/s"
    )
    if args.hosts > 1:
        bench_line(f"e2e_{args.hosts}hosts_jobs_per_s", flood_result.jobs_per_s, "jobs/s")
        bench_line("e2e_failover_jobs_per_s", results["failover"].jobs_per_s, "jobs/s")
    bench_line("e2e_latency_p50_ms", percentile(latency.latencies_ms, 50), "ms")
    bench_line("e2e_latency_p99_ms", percentile(latency.latencies_ms, 99), "ms")
    if "single" in results:
        bench_line("e2e_single_8tasks_jobs_per_s", results["single"].jobs_per_s, "jobs/s")
    for feature, us in costs.items():
        bench_line(f"cost_{feature}_us_per_job", us, "us/job")


@dataclass
class Stack:
    """The running processes: qstash_local, the hosts so far, and how to start another."""

    qstash: Child
    hosts: list[Child]
    ports: list[int]
    start_host: Callable[[int], Awaitable[Child]]

    def named(self) -> dict[str, int]:
        """Process name → pid, for the CPU meter and the profiler."""
        return {h.name: h.pid for h in self.hosts} | {"qstash_local": self.qstash.pid}


async def benchmark(
    args: argparse.Namespace,
    pool: asyncpg.Pool,
    stack: Stack,
    logs: Path,
    results: dict[str, Result],
    costs: dict[str, float],
) -> None:
    # the hosts' own policy (start_host): --costs' callbacks go to this process on loopback
    policy = jobstore.AddressPolicy(allow_private=True, ports=None)
    dispatcher = Dispatcher(jobstore.EventStore(pool), registry(), policy)
    meter = CpuMeter(pool, stack.named())
    await run_phase("warm-up", pool, meter, flood(dispatcher, args.warmup, 100), args.warmup)
    if args.hosts > 1:
        results["flood_1host"] = await run_phase(
            "flood (1 host behind haproxy)",
            pool,
            meter,
            flood(dispatcher, args.jobs, args.batch),
            args.jobs,
        )
        for n in range(1, args.hosts):
            stack.hosts.append(await stack.start_host(n))
        await balanced()
        meter = CpuMeter(pool, stack.named())
    profiler = Profiler(args.profile, stack.named() | {"bench": os.getpid()}, logs)
    profiler.start()
    try:
        results["flood"] = await run_phase(
            f"flood ({len(stack.hosts)} host{'s' if len(stack.hosts) > 1 else ''})",
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
    if args.costs:
        await measure_costs(args, pool, meter, dispatcher, costs)
    if len(stack.hosts) > 1:
        results["failover"] = await run_phase(
            f"failover: a flood while {stack.hosts[0].name} is killed (SIGKILL) mid-flow",
            pool,
            meter,
            killing(dispatcher, pool, args.jobs, args.batch, stack.hosts[0]),
            args.jobs,
            history=FAILED_OVER,
        )
        stack.hosts.pop(0)
    for child in stack.hosts:
        url = f"http://127.0.0.1:{stack.ports[int(child.name[4:] or 1) - 1]}"
        print(f"{child.name} deliveries: {await deliveries(url)}", flush=True)


NOTIFIED = [*HISTORY, "job.notified"]


async def answer_ok(request: web.Request) -> web.Response:
    """The callbacks' receiver: takes the notification, answers 200."""
    await request.read()
    return web.Response(text="ok")


COST_ROUNDS = 3


async def measure_costs(
    args: argparse.Namespace,
    pool: asyncpg.Pool,
    meter: CpuMeter,
    dispatcher: Dispatcher,
    costs: dict[str, float],
) -> None:
    """Each guarantee's CPU per job: floods with it on and off, alternating, the median gap.

    * personal fields: a job type with one sealed field against the plain ``noop``;
    * notifications: jobs with a completion ``callback`` (the notifier publishes, QStash
      delivers to the host's notify endpoint, the host calls a receiver in this process and
      records ``job.notified``) against jobs without one;
    * the hash chain: computed off the append path (sql/0045), so no flood runs without
      it; its price is the CPU of chaining what the round's floods appended
      (``audit.chain_pending``, as the anchorer does every interval), per job of the
      plain flood's shape (its events per job).

    Replay protection (delivery tokens) has no switch short of changing the product.
    """
    receiver = web.Application()
    receiver.router.add_post("/callback", answer_ok)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    callback = {"callback": f"http://127.0.0.1:{port}/callback"}
    try:
        gaps: dict[str, list[dict[str, float]]] = {
            "personal_fields": [],
            "notifications": [],
            "hash_chain": [],
        }
        for round_ in range(1, COST_ROUNDS + 1):
            plain = await cost_flood(args, pool, meter, dispatcher, f"plain, round {round_}")
            sealed = await cost_flood(
                args,
                pool,
                meter,
                dispatcher,
                f"personal field, round {round_}",
                job_type=PERSONAL,
                payload={"email": "someone@example.com"},
            )
            notified = await cost_flood(
                args,
                pool,
                meter,
                dispatcher,
                f"with a callback, round {round_}",
                options=callback,
                history=NOTIFIED,
            )
            chained = await chain_cost(pool, meter)
            gaps["personal_fields"].append(difference(sealed, plain))
            gaps["notifications"].append(difference(notified, plain))
            gaps["hash_chain"].append(chained)
    finally:
        await runner.cleanup()
    for feature, rounds in gaps.items():
        totals = [sum(r.values()) for r in rounds]
        costs[feature] = statistics.median(totals)
        shown = ", ".join(f"{v:,.0f}" for v in totals)
        print(
            f"cost of {feature}: {costs[feature]:,.0f} µs of CPU per job (rounds: {shown}); "
            "median by process: "
            + ", ".join(
                f"{name} {statistics.median(r[name] for r in rounds):,.0f}" for name in rounds[0]
            ),
            flush=True,
        )


def difference(on: dict[str, float], off: dict[str, float]) -> dict[str, float]:
    """CPU µs per job by process, ``on`` minus ``off``."""
    return {name: us - off.get(name, 0.0) for name, us in on.items()}


async def cost_flood(
    args: argparse.Namespace,
    pool: asyncpg.Pool,
    meter: CpuMeter,
    dispatcher: Dispatcher,
    label: str,
    *,
    job_type: str = NOOP,
    payload: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    history: list[str] = HISTORY,
) -> dict[str, float]:
    """One flood of ``args.cost_jobs`` jobs; its CPU µs per job by process."""
    result = await run_phase(
        f"cost: {label}",
        pool,
        meter,
        flood(dispatcher, args.cost_jobs, args.batch, job_type, payload, options),
        args.cost_jobs,
        history=history,
    )
    return {name: us for name, us, _ in result.cpu}


async def chain_cost(pool: asyncpg.Pool, meter: CpuMeter) -> dict[str, float]:
    """CPU µs per job by process of chaining what is pending (the floods just run): per
    chained event, times a plain job's events (:data:`HISTORY`)."""
    before = await meter.sample()
    events = await audit.chain_pending(pool)
    after = await meter.sample()
    if not events:
        return {}
    per_event = CpuMeter.per_job(before, after, events)
    print(f"  chained {events:,} events", flush=True)
    return {name: us * len(HISTORY) for name, us, _ in per_event}


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
        "--hosts",
        type=int,
        default=1,
        help="hosts behind haproxy (above 1: a flood on the first alone, then on all)",
    )
    parser.add_argument(
        "--costs",
        action="store_true",
        help="also price personal fields, notifications and the hash chain (floods off/on)",
    )
    parser.add_argument("--cost-jobs", type=int, default=1000, help="jobs in each flood of --costs")
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
