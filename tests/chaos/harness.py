"""One fault-injection run, start to verdict: ``await run(ChaosConfig(seed=7))``.

The host, qstash_local and a private PostgreSQL run as processes (:mod:`tests.chaos.cluster`);
this process enqueues a seeded plan of jobs, injects the seeded faults, sends duplicate
deliveries, cancels and replays, and tails the log.  Then it lets the system settle
(bounded, with progress lines), gathers the log, the views and the handler's runs, and
checks every invariant (:mod:`tests.chaos.checker`).  The plan and the faults are fixed by
the seed; how they interleave with the processes is not (it is a real system on a real
clock), so a failing seed is a strong lead, not a guaranteed replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg
from qstash import AsyncQStash

import jobstore
import projections
import qstash_local
from jobstore import Dispatcher, EventStore, RecordedEvent, job_state
from projections import attempt
from tests.chaos import app, checker, cluster, faults, workload
from tests.chaos.checker import Evidence, Findings
from tests.chaos.faults import FAULT_KINDS
from tests.chaos.tailer import Tailer

Say = Callable[[str], None]
PROGRESS_EVERY_S: Final = 5.0
READ_PAGE: Final = 5000
QUIET_TRIES: Final = 5
"""Times the evidence is read again when the log moved while it was read."""
UNFINISHED_CANDIDATES: Final = """
SELECT substr(stream_id, 5) AS job_id
  FROM (SELECT DISTINCT ON (stream_id) stream_id, event_type
          FROM jobtrail.events
         WHERE stream_id LIKE 'job-%' AND event_type <> 'job.notified'
         ORDER BY stream_id, version DESC) AS last
 WHERE event_type NOT IN ('job.completed', 'job.failed', 'job.cancelled')
"""
"""Jobs whose last event is not an end (a superset of the unfinished: a fold decides)."""


@dataclass(frozen=True)
class ChaosConfig:
    """What one run does."""

    seed: int = 1
    jobs: int = 300
    duration: float = 20.0
    """Seconds over which the jobs are enqueued and the faults injected."""
    hosts: int = 1
    """Hosts sharing the database and qstash_local (a stalled one, another one sweeping)."""
    faults: int = 5
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    """The kinds drawn from (``pg_restart_fast`` alone: a storm of PostgreSQL restarts)."""
    duplicates_per_second: float = 5.0
    operations_per_second: float = 1.0
    """Cancels and replays per second."""
    settle_timeout: float = 120.0
    timing: cluster.Timing = field(default_factory=cluster.Timing)
    keep: Path | None = None
    """Keep the processes' logs in this folder (a temporary one, removed, otherwise)."""


@dataclass
class ChaosResult:
    """What a run did and what the checks found."""

    config: ChaosConfig
    findings: Findings
    jobs: int
    """Distinct jobs that accepted enqueues returned."""
    enqueues: int
    jobs_in_log: int
    events: int
    event_types: Counter[str]
    faults: Counter[str]
    duplicates: int
    duplicate_answers: Counter[str]
    operations: Counter[str]
    enqueue_errors: Counter[str]
    tailer_restarts: Counter[str]
    internal_errors: list[str]
    settled: bool
    settle_seconds: float
    run_seconds: float

    def __getattr__(self, kind: str) -> int:
        if kind in checker.VIOLATIONS:
            return self.findings[kind]
        raise AttributeError(kind)

    @property
    def ok(self) -> bool:
        """Every invariant held."""
        return self.findings.ok

    def summary(self) -> str:
        """A human report: what ran, what was injected, what the checks found."""
        f = self.findings
        lines = [
            f"seed {self.config.seed}: {self.jobs:,} jobs from {self.enqueues:,} enqueues, "
            f"{self.jobs_in_log:,} in the log, {self.events:,} events",
            f"events: {_counts(self.event_types)}",
            f"faults: {_counts(self.faults)}",
            f"duplicate deliveries: {self.duplicates:,} ({_counts(self.duplicate_answers)})",
            f"operator: {_counts(self.operations)}",
            f"enqueue calls retried: {_counts(self.enqueue_errors)}",
            f"final statuses: {_counts(f.statuses)}; waiting (delayed): {f.waiting}",
            f"failed by faults (retries spent by faults, not the handler): "
            f"{sum(f.failed_by_faults.values())} ({_counts(f.failed_by_faults)})",
            f"settled: {self.settled} after {self.settle_seconds:.1f} s "
            f"(run {self.run_seconds:.1f} s)",
            f"tailer restarts: {_counts(self.tailer_restarts)}",
            f"internal-error answers: {len(self.internal_errors)}",
            "invariants: " + ", ".join(f"{k} {f[k]}" for k in checker.VIOLATIONS),
        ]
        if f.max_early_seconds:
            lines.append(f"earliest start before not_before: {f.max_early_seconds:.3f} s")
        lines += [f"    {example}" for example in f.failed_by_faults_examples]
        if not f.ok:
            lines.append(f.describe())
        return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items()) if v) or "none"


async def run(config: ChaosConfig, say: Say = print) -> ChaosResult:
    """Run the cluster under ``config``'s faults and check the invariants."""
    folder = config.keep or Path(tempfile.mkdtemp(prefix="jobtrail-chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        async with cluster.running(folder, config.timing, config.hosts) as running:
            say(
                f"chaos: seed {config.seed}, {config.jobs:,} jobs over {config.duration:g} s, "
                f"{config.faults} faults, {config.hosts} host(s); PostgreSQL {running.pg.dsn}, "
                f"logs in {folder}; "
                f"processes up in {time.monotonic() - started:.1f} s"
            )
            result = await _run(config, running, say)
        say(f"processes stopped; {time.monotonic() - started:.1f} s in all")
        return result
    finally:
        if config.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Actors:
    """Everyone acting on the cluster during a run, each drawing from a random of its own
    (derived from the seed), so the plan and the faults stay the same whatever the timing."""

    producer: workload.Producer
    injector: faults.Injector
    duplicator: faults.Duplicator
    operator: faults.Operator
    planned: list[workload.Planned]
    fault_times: list[tuple[float, str]]

    @classmethod
    def cast(
        cls, config: ChaosConfig, running: cluster.Cluster, store: EventStore, say: Say
    ) -> Actors:
        """The actors of ``config``'s run on ``running``."""
        seeds = random.Random(config.seed)
        plan_rng, fault_rng, dup_rng, op_rng = (random.Random(seeds.random()) for _ in range(4))
        dispatcher = Dispatcher(store, app.registry())
        return cls(
            producer=workload.Producer(dispatcher),
            injector=faults.Injector(running, fault_rng, say),
            duplicator=faults.Duplicator(store, running, dup_rng),
            operator=faults.Operator(dispatcher, running, op_rng, say),
            planned=workload.plan(plan_rng, config.jobs),
            fault_times=faults.fault_plan(
                fault_rng, config.faults, config.duration, config.fault_kinds
            ),
        )

    async def play(self, config: ChaosConfig, running: cluster.Cluster, say: Say) -> None:
        """Enqueue the plan and inject the faults, duplicates, cancels and replays meanwhile."""
        stop = asyncio.Event()
        jobs = self.producer.order
        background = [
            asyncio.create_task(self.duplicator.run(jobs, config.duplicates_per_second, stop)),
            asyncio.create_task(self.operator.run(jobs, config.operations_per_second, stop)),
            asyncio.create_task(self._report(running, stop, say)),
        ]
        try:
            await asyncio.gather(
                self.producer.run(self.planned, config.duration),
                self.injector.run(self.fault_times),
            )
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
        await running.revive()

    async def _report(self, running: cluster.Cluster, stop: asyncio.Event, say: Say) -> None:
        """A progress line every few seconds; a process found dead is started again."""
        started = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROGRESS_EVERY_S)
            say(
                f"  {time.monotonic() - started:5.1f} s: {self.producer.sent:,} enqueued, "
                f"{sum(self.injector.done.values())} faults, "
                f"{self.duplicator.sent:,} duplicates"
            )
            try:
                await running.revive()
            except RuntimeError as exc:  # it would not start again: the run goes on without
                say(f"  could not start a crashed process again: {exc}")


async def _run(config: ChaosConfig, running: cluster.Cluster, say: Say) -> ChaosResult:
    pool = await jobstore.create_pool(running.pg.dsn, min_size=0, max_size=8)
    try:
        store = EventStore(pool)
        actors = Actors.cast(config, running, store, say)
        started = time.monotonic()
        async with Tailer(store, running.pg.dsn) as tailer:
            await actors.play(config, running, say)
            settle_started = time.monotonic()
            qstash = AsyncQStash(qstash_local.DEV_TOKEN, base_url=running.qstash_url, retry=False)
            try:
                settled = await settle(store, tailer, qstash, config.settle_timeout, say)
            finally:
                await qstash.http._client.aclose()
            settle_seconds = time.monotonic() - settle_started
            evidence = await gather_evidence(store, tailer, actors.producer, running.runs_file)
        evidence.host_log = running.host_log()
        evidence.unclassified_errors = actors.producer.unclassified + actors.operator.unclassified
        evidence.reader_crashes = tailer.restarts
        evidence.process_crashes = running.crashes
        return ChaosResult(
            config=config,
            findings=checker.check(evidence),
            jobs=len(actors.producer.accepted),
            enqueues=actors.producer.sent,
            jobs_in_log=len(evidence.streams),
            events=len(evidence.log_positions),
            event_types=Counter(
                r.type_name for stream in evidence.streams.values() for r in stream
            ),
            faults=actors.injector.done,
            duplicates=actors.duplicator.sent,
            duplicate_answers=actors.duplicator.statuses,
            operations=actors.operator.outcomes,
            enqueue_errors=actors.producer.errors,
            tailer_restarts=tailer.restarts,
            internal_errors=actors.duplicator.internal_errors + actors.operator.internal_errors,
            settled=settled,
            settle_seconds=settle_seconds,
            run_seconds=time.monotonic() - started,
        )
    finally:
        await pool.close()


async def settle(
    store: EventStore, tailer: Tailer, qstash: AsyncQStash, within: float, say: Say
) -> bool:
    """Wait until every job has finished, the views and the tailer have read the whole log;
    False if that did not happen within ``within`` seconds."""
    deadline = time.monotonic() + within
    next_report = time.monotonic() + PROGRESS_EVERY_S
    while True:
        try:
            unfinished = await unfinished_jobs(store)
            head = await store.head()
            views_done = await _views_caught_up(store.pool)
        except (jobstore.DatabaseUnavailableError, asyncpg.PostgresError, OSError) as exc:
            say(f"settling: database not answering ({type(exc).__name__}); waiting")
            unfinished, views_done, head = {"?": "unknown"}, False, jobstore.START
        done = not unfinished and views_done and tailer.reached(head)
        if done:
            return True
        now = time.monotonic()
        if now > deadline:
            say(f"settling: gave up after {within:.0f} s")
            return False
        if now >= next_report:
            next_report = now + PROGRESS_EVERY_S
            statuses = Counter(unfinished.values())
            say(
                f"settling: {len(unfinished)} unfinished ({_counts(statuses)}), "
                f"views caught up: {views_done}, tailer caught up: {tailer.reached(head)}"
            )
            for job_id in sorted(unfinished)[:2]:
                say(f"  e.g. {job_id}: {await _history(store, job_id)}")
                say(f"    in QStash: {await _qstash_story(store, qstash, job_id)}")
        await asyncio.sleep(0.5)


async def _history(store: EventStore, job_id: str) -> str:
    with contextlib.suppress(Exception):
        events = await store.read_stream(job_state.stream_id(job_id))
        return ", ".join(f"{r.recorded_at:%H:%M:%S.%f} {r.type_name} {_brief(r)}" for r in events)
    return "(not readable now)"


async def _qstash_story(store: EventStore, qstash: AsyncQStash, job_id: str) -> str:
    """What QStash says of the job's newest published message: its newest log rows."""
    with contextlib.suppress(Exception):
        row = await store.pool.fetchrow(
            "SELECT dispatch, message_id FROM jobtrail.relay_messages WHERE job_id = $1"
            " ORDER BY dispatch DESC LIMIT 1",
            job_id,
        )
        if row is None:
            return "never published"
        logs = (await qstash.log.list(filter={"message_id": row["message_id"]})).logs
        rows = [_log_row(entry) for entry in logs[:6]]
        return f"dispatch {row['dispatch']} {row['message_id']}: {'; '.join(rows) or 'unknown'}"
    return "(not readable now)"


def _log_row(entry: Any) -> str:
    """A QStash log row: state, its status answer, when the next delivery is due."""
    text = entry.state.value
    if entry.response_status is not None:
        text += f" (answer {entry.response_status})"
    if entry.next_delivery_time:
        text += f", next delivery in {entry.next_delivery_time / 1000 - time.time():.0f} s"
    return text


def _brief(recorded: RecordedEvent) -> str:
    data = recorded.event.model_dump(include={"dispatch", "attempt", "source", "will_retry"})
    return " ".join(f"{k}={v}" for k, v in data.items())


async def unfinished_jobs(store: EventStore) -> dict[str, str]:
    """Each unfinished job's status, by job id (folded from the log, not the views)."""
    rows = await store.pool.fetch(UNFINISHED_CANDIDATES)
    out: dict[str, str] = {}
    for row in rows:
        state = job_state.fold(await store.read_stream(job_state.stream_id(row["job_id"])))
        if state is not None and not state.finished:
            out[state.job_id] = state.status.value
    return out


async def _views_caught_up(pool: asyncpg.Pool) -> bool:
    last = await EventStore(pool).last_position()
    try:
        await projections.wait_for_position(pool, last, timeout=1.0)
    except projections.ProjectionError:
        return False
    return True


async def gather_evidence(
    store: EventStore, tailer: Tailer, producer: workload.Producer, runs_file: Path
) -> Evidence:
    """The whole log, the views and the handler's runs, for the checker.

    Read while the log stands still: the views and the tailer are first waited for up to
    the log's end, and if anything was appended while reading, everything is read again.
    """
    for _ in range(QUIET_TRIES):
        before = await store.last_position()
        await _caught_up(store, tailer)
        executions, attempts = await _read_views(store.pool)
        events = await _read_log(store)
        seen = list(tailer.seen)
        if await store.last_position() == before:
            break
    streams: defaultdict[str, list[RecordedEvent]] = defaultdict(list)
    for recorded in events:
        job_id = job_state.job_id_of(recorded.stream_id)
        if job_id is not None:
            streams[job_id].append(recorded)
    for stream in streams.values():
        stream.sort(key=lambda r: r.version)
    return Evidence(
        streams=dict(streams),
        log_positions=[r.position for r in events],
        seen_positions=seen,
        executions=executions,
        attempts=attempts,
        accepted=set(producer.accepted),
        keys=producer.keys(),
        runs=read_runs(runs_file),
        now=time.time(),
    )


async def _caught_up(store: EventStore, tailer: Tailer, within: float = 30.0) -> None:
    """Wait (bounded) until the views and the tailer have read the log up to its end now."""
    head = await store.head()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if tailer.reached(head) and await _views_caught_up(store.pool):
            return
        await asyncio.sleep(0.2)


async def _read_log(store: EventStore) -> list[RecordedEvent]:
    events: list[RecordedEvent] = []
    while page := await store.read_all(events[-1].position if events else 0, READ_PAGE):
        events += page
    return events


async def _read_views(
    pool: asyncpg.Pool,
) -> tuple[dict[str, Any], dict[str, dict[attempt.AttemptKey, tuple[Any, ...]]]]:
    executions = {r["job_id"]: r for r in await pool.fetch("SELECT * FROM jobtrail.job_executions")}
    attempts: defaultdict[str, dict[attempt.AttemptKey, tuple[Any, ...]]] = defaultdict(dict)
    columns = ", ".join(attempt.COLUMNS)
    for r in await pool.fetch(f"SELECT {columns} FROM jobtrail.job_attempts"):
        attempts[r["job_id"]][(r["dispatch"], r["attempt"])] = tuple(r)
    return executions, dict(attempts)


def read_runs(path: Path) -> list[checker.Run]:
    """The handler's record of its runs (a line cut short by a kill is skipped)."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            runs.append((parts[0], int(parts[1]), int(parts[2])))
    return runs
