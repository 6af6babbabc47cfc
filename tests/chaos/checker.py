"""The invariants of a fault-injection run, checked from the log, the views and the handler's
own record of its runs: pure functions of what the run gathered (:class:`Evidence`).

Each check counts violations and keeps a few examples, so a report says what broke and
where to look.  The rules are DESIGN.md's: nothing enqueued is lost, nothing stays
unfinished, no dispatch or attempt is recorded twice, a dispatch gets one outcome, a delayed
job never starts early, the views equal a fold of the log, and a reader tailing the log
never skips an event.  Late reports (an outcome arriving after its attempt was closed) are
events of their own type and are not outcomes: only ``job.completed``, ``job.failed`` and
``job.attempt_failed`` count.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from jobstore import RecordedEvent, job_state
from jobstore.job_events import (
    JobAttemptFailed,
    JobCompleted,
    JobDispatched,
    JobFailed,
    JobStarted,
)
from projections import attempt, execution

EXAMPLES: Final = 5
"""Examples kept per kind of violation."""
Run = tuple[str, int, int]
"""One handler run: (job id, dispatch, attempt)."""


@dataclass(frozen=True)
class KeyUse:
    """Every enqueue of one idempotency key: the job ids it returned, its first request's tag."""

    first_tag: str
    job_ids: tuple[str, ...]


@dataclass
class Evidence:
    """What a run gathered once it settled."""

    streams: Mapping[str, Sequence[RecordedEvent]]
    """Each job's events, in version order, by job id."""
    log_positions: Sequence[int]
    """Every position in the log."""
    seen_positions: Sequence[int]
    """The positions a reader tailing the log saw, in the order it saw them."""
    executions: Mapping[str, execution.Row]
    """The ``job_executions`` rows, by job id."""
    attempts: Mapping[str, Mapping[attempt.AttemptKey, tuple[Any, ...]]]
    """The ``job_attempts`` rows (values in ``attempt.COLUMNS`` order), by job id."""
    accepted: set[str]
    """The job ids enqueues returned."""
    keys: Mapping[str, KeyUse] = field(default_factory=dict)
    runs: Sequence[Run] = ()
    """The handler's own record of its runs."""
    now: float = 0.0
    """Unix time when the run settled (a job delayed past it may still wait)."""
    host_log: str = ""
    """Everything the host wrote (JSON lines), over all its lives."""
    unclassified_errors: Mapping[str, int] = field(default_factory=dict)
    """Errors library calls raised during outages other than DatabaseUnavailableError (so the
    caller cannot tell that trying again is right), by type and message."""
    reader_crashes: Mapping[str, int] = field(default_factory=dict)
    """Errors that ended a running log subscription (instead of being ridden out), by type."""
    process_crashes: Sequence[str] = ()
    """The host or qstash_local found dead without a fault having stopped it."""


@dataclass
class Findings:
    """Violations found, by invariant, with a few examples each."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    waiting: int = 0
    """Unfinished jobs legitimately waiting (delayed beyond the end of the run)."""
    max_early_seconds: float = 0.0
    failed_by_faults: Counter[str] = field(default_factory=Counter)
    """Failed jobs whose handler would have succeeded within their retries, by the reason
    their failure was recorded with."""
    failed_by_faults_examples: list[str] = field(default_factory=list)

    def add(self, kind: str, example: str, count: int = 1) -> None:
        """Count ``count`` violations of ``kind``; keep ``example`` among the first few."""
        self.counts[kind] += count
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(example)

    def __getitem__(self, kind: str) -> int:
        return self.counts[kind]

    @property
    def ok(self) -> bool:
        """No violation of any kind."""
        return not +self.counts

    def describe(self) -> str:
        """Every violation kind with its count and examples, one per line."""
        lines = []
        for kind, count in sorted(self.counts.items()):
            if count:
                lines.append(f"{kind}: {count}")
                lines += [f"    {example}" for example in self.examples[kind]]
        return "\n".join(lines) or "no violations"


VIOLATIONS: Final = (
    "lost",
    "stuck",
    "double_dispatches",
    "double_starts",
    "double_outcomes",
    "outcomes_without_start",
    "starts_after_outcome",
    "early_starts",
    "view_mismatches",
    "skipped",
    "seen_twice",
    "double_runs",
    "runs_without_start",
    "idempotency_violations",
    "host_unexpected_errors",
    "host_tasks_stopped",
    "unclassified_errors",
    "reader_crashes",
    "process_crashes",
)
"""Every kind of violation the checker reports (all must be zero)."""


def check(evidence: Evidence) -> Findings:
    """Check every invariant against ``evidence``."""
    findings = Findings()
    for kind in VIOLATIONS:
        findings.counts[kind] = 0
    check_accepted(evidence, findings)
    for job_id, events in evidence.streams.items():
        check_stream(job_id, events, evidence.now, findings)
    check_views(evidence, findings)
    check_tail(evidence.log_positions, evidence.seen_positions, findings)
    check_runs(evidence.streams, evidence.runs, findings)
    check_keys(evidence, findings)
    check_errors(evidence, findings)
    return findings


def check_accepted(evidence: Evidence, findings: Findings) -> None:
    """Every job id an enqueue returned has a stream in the log."""
    for job_id in sorted(evidence.accepted - evidence.streams.keys()):
        findings.add("lost", f"job {job_id}: enqueue returned it, the log has no event of it")


def check_stream(
    job_id: str, events: Sequence[RecordedEvent], now: float, findings: Findings
) -> None:
    """One job's history: dispatches, starts, outcomes, delays and its final state."""
    dispatches: list[int] = []
    starts: Counter[tuple[int, int]] = Counter()
    attempt_outcomes: Counter[tuple[int, int]] = Counter()
    ended: set[int] = set()
    current = 0
    not_before: float | None = None
    for recorded in events:
        event = recorded.event
        where = f"job {job_id} v{recorded.version} ({event.type_name})"
        match event:
            case JobDispatched():
                dispatches.append(event.dispatch)
                current = event.dispatch
                not_before = _effective_not_before(event, not_before)
            case JobStarted():
                key = (event.dispatch, event.attempt)
                starts[key] += 1
                if starts[key] > 1:
                    findings.add("double_starts", f"{where}: dispatch/attempt {key} started again")
                if event.dispatch in ended:
                    findings.add("starts_after_outcome", f"{where}: dispatch {key[0]} had ended")
                at = recorded.recorded_at.timestamp()
                if not_before is not None and at < not_before:
                    early = not_before - at
                    findings.max_early_seconds = max(findings.max_early_seconds, early)
                    findings.add(
                        "early_starts",
                        f"{where}: started at {at:.3f}, {early:.3f} s before its not_before "
                        f"{not_before:.3f}",
                    )
            case JobCompleted() | JobAttemptFailed():
                key = (event.dispatch, event.attempt)
                if key not in starts:
                    findings.add("outcomes_without_start", f"{where}: attempt {key} never started")
                attempt_outcomes[key] += 1
                if attempt_outcomes[key] > 1:
                    findings.add("double_outcomes", f"{where}: second outcome of attempt {key}")
                _dispatch_outcome(event, current, ended, where, findings)
            case JobFailed():
                _dispatch_outcome(event, current, ended, where, findings)
            case _:
                pass  # cancels, notifications, late reports: not outcomes
    if dispatches != list(range(1, len(dispatches) + 1)):
        findings.add("double_dispatches", f"job {job_id}: dispatch numbers {dispatches}")
    _check_final(job_id, events, not_before, now, findings)


def _effective_not_before(event: JobDispatched, before: float | None) -> float | None:
    """The earliest a dispatch may start: its own delay; a recovery keeps the remaining
    delay of the dispatch it replaces (a lost message does not make a job due)."""
    own = event.options.not_before
    if event.source != "recovery" or before is None:
        return own
    return before if own is None else max(own, before)


def _dispatch_outcome(
    event: JobCompleted | JobAttemptFailed | JobFailed,
    current: int,
    ended: set[int],
    where: str,
    findings: Findings,
) -> None:
    if event.dispatch != current:
        findings.add(
            "double_outcomes", f"{where}: outcome of dispatch {event.dispatch}, current {current}"
        )
    if isinstance(event, JobAttemptFailed):
        return
    if event.dispatch in ended:
        findings.add("double_outcomes", f"{where}: second outcome of dispatch {event.dispatch}")
    ended.add(event.dispatch)


def _check_final(
    job_id: str,
    events: Sequence[RecordedEvent],
    not_before: float | None,
    now: float,
    findings: Findings,
) -> None:
    try:
        state = job_state.fold(events)
    except Exception as exc:  # a history the fold refuses is itself a finding
        findings.add("view_mismatches", f"job {job_id}: the fold fails: {exc}")
        return
    if state is None:
        return
    findings.statuses[state.status.value] += 1
    if state.status.value == "failed":
        _failed_by_faults(job_id, events, state, findings)
    if state.finished:
        return
    if not_before is not None and not_before > now:
        findings.waiting += 1
        return
    kinds = [r.event.type_name for r in events]
    findings.add("stuck", f"job {job_id}: {state.status.value} after {kinds}")


def _failed_by_faults(
    job_id: str, events: Sequence[RecordedEvent], state: job_state.JobState, findings: Findings
) -> None:
    """A failed job whose handler fails fewer times than its attempts allow: faults, not the
    handler, spent its retries (a figure, not an invariant: abandoned attempts count)."""
    planned = state.payload.get("fail_times", 0)
    if not isinstance(planned, int) or planned > state.max_retries:
        return
    reasons = [r.event.reason for r in events if isinstance(r.event, JobFailed)]
    findings.failed_by_faults[reasons[-1] if reasons else "?"] += 1
    if len(findings.failed_by_faults_examples) < EXAMPLES:
        kinds = [r.event.type_name for r in events]
        findings.failed_by_faults_examples.append(f"job {job_id}: {kinds}")


def check_views(evidence: Evidence, findings: Findings) -> None:
    """Each job's ``job_executions`` row and ``job_attempts`` rows equal a fold of its stream."""
    for job_id, events in evidence.streams.items():
        problem = _view_problem(job_id, events, evidence)
        if problem:
            findings.add("view_mismatches", f"job {job_id}: {problem}")
    for job_id in sorted(evidence.executions.keys() - evidence.streams.keys()):
        findings.add("view_mismatches", f"job {job_id}: a view row without any event")


def _view_problem(job_id: str, events: Sequence[RecordedEvent], evidence: Evidence) -> str:
    try:
        state = job_state.fold(events)
    except Exception:
        return ""  # counted by the stream check
    row = evidence.executions.get(job_id)
    if row is None:
        return "no job_executions row"
    held = execution.state_of(row)
    if held != state:
        assert state is not None
        fields = [
            f"{name}: view {getattr(held, name)!r} != log {getattr(state, name)!r}"
            for name in held.__dataclass_fields__
            if getattr(held, name) != getattr(state, name)
        ]
        return "job_executions differs: " + "; ".join(fields)[:400]
    folded: dict[attempt.AttemptKey, attempt.AttemptRow] = {}
    for recorded in events:
        attempt.apply(job_id, folded, recorded)
    expected = {key: attempt.record(row) for key, row in folded.items()}
    held_attempts = dict(evidence.attempts.get(job_id, {}))
    if held_attempts != expected:
        return f"job_attempts differs: view {held_attempts} != log {expected}"[:400]
    return ""


def check_tail(log: Sequence[int], seen: Sequence[int], findings: Findings) -> None:
    """A reader tailing the log saw every event of it, each once."""
    seen_set = set(seen)
    missed = sorted(set(log) - seen_set)
    if missed:
        findings.add("skipped", f"positions never seen by the tailer: {missed[:20]}", len(missed))
    twice = [p for p, n in Counter(seen).items() if n > 1]
    if twice:
        example = f"positions seen more than once: {sorted(twice)[:20]}"
        findings.add("seen_twice", example, len(twice))


def check_runs(
    streams: Mapping[str, Sequence[RecordedEvent]], runs: Iterable[Run], findings: Findings
) -> None:
    """The handler ran each recorded attempt at most once, and only recorded attempts."""
    counted = Counter(runs)
    for (job_id, dispatch, number), n in sorted(counted.items()):
        started = any(
            isinstance(r.event, JobStarted)
            and (r.event.dispatch, r.event.attempt) == (dispatch, number)
            for r in streams.get(job_id, ())
        )
        where = f"job {job_id} dispatch {dispatch} attempt {number}"
        if not started:
            findings.add("runs_without_start", f"{where}: the handler ran, no job.started")
        if n > 1:
            findings.add("double_runs", f"{where}: the handler ran {n} times", n - 1)


def check_keys(evidence: Evidence, findings: Findings) -> None:
    """An idempotency key names one job, and the first request's payload is the one kept."""
    for key, use in sorted(evidence.keys.items()):
        ids = set(use.job_ids)
        if len(ids) != 1:
            findings.add("idempotency_violations", f"key {key}: {len(ids)} jobs {sorted(ids)}")
            continue
        (job_id,) = ids
        events = evidence.streams.get(job_id, ())
        first = events[0].event if events else None
        if not isinstance(first, JobDispatched):
            continue  # a lost job: counted by check_accepted
        tag = first.payload.get("tag")
        if tag != use.first_tag:
            findings.add(
                "idempotency_violations",
                f"key {key}: job {job_id} holds {tag!r}, the first request was {use.first_tag!r}",
            )


def _unexpected_error(line: str) -> bool:
    return '"event": "unexpected error"' in line


def _task_crash(line: str) -> bool:
    """A background task that stopped, or failed on an error not classified as a database
    outage (those are logged with their traceback; an outage is expected and ridden out)."""
    if '"event": "background task stopped"' in line:
        return True
    return '"event": "background task failed' in line and '"exception"' in line


HOST_LOG_EVENTS: Final = {
    "host_unexpected_errors": _unexpected_error,
    "host_tasks_stopped": _task_crash,
}
"""Host log lines that are violations: a 500 answer (a spent QStash retry), a task dying of
an unexpected error."""


def check_errors(evidence: Evidence, findings: Findings) -> None:
    """No 500 for a hiccup, no background task left dead, every outage reported to library
    callers as DatabaseUnavailableError, no log reader ended by a database restart."""
    for kind, matches in HOST_LOG_EVENTS.items():
        for line in evidence.host_log.splitlines():
            if matches(line):
                findings.add(kind, _host_line(line))
    for name, count in sorted(evidence.unclassified_errors.items()):
        findings.add("unclassified_errors", f"raised to a library caller: {name}", count)
    for crash in evidence.process_crashes:
        findings.add("process_crashes", crash[:400])
    for name, count in sorted(evidence.reader_crashes.items()):
        findings.add("reader_crashes", f"a log subscription ended with {name}", count)


def _host_line(line: str) -> str:
    """The gist of a host log line: when, where, and the exception's last line."""
    try:
        data = json.loads(line)
    except ValueError:
        return line[:300]
    error = str(data.get("exception", "")).strip().splitlines()[-1:] or [""]
    where = data.get("path") or data.get("task") or ""
    return f"{data.get('timestamp', '')} {where}: {error[0]}"[:300]
