"""The fault-injection run's checker (tests/chaos/checker.py) against hand-made logs: a good
run passes, and each broken invariant is reported under its own name.

This is what makes the chaos test able to fail: if the checker missed a double outcome or a
skipped event, the run that found none would prove nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from jobstore import Event, RecordedEvent, job_state
from jobstore.job_events import (
    JobAttemptFailed,
    JobCancelled,
    JobCompleted,
    JobDispatched,
    JobFailed,
    JobStarted,
)
from projections import attempt, execution
from tests.chaos import checker
from tests.chaos.checker import Evidence, KeyUse

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
JOB = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"
Change = Callable[[Evidence], None]


def dispatched(job_id: str, n: int = 1, source: str = "api", **options: Any) -> JobDispatched:
    return JobDispatched(
        job_id=job_id,
        dispatch=n,
        job_type="chaos-job",
        payload={"tag": f"tag-{job_id[:4]}"},
        options={"retries": 2, "timeout": 2.0, **options},
        source=source,  # type: ignore[arg-type]
    )


def started(n: int = 1, a: int = 1) -> JobStarted:
    return JobStarted(dispatch=n, attempt=a, lease_until=T0.timestamp() + 100)


def completed(n: int = 1, a: int = 1) -> JobCompleted:
    return JobCompleted(dispatch=n, attempt=a, duration_seconds=0.1)


def attempt_failed(n: int = 1, a: int = 1, will_retry: bool = True) -> JobAttemptFailed:
    return JobAttemptFailed(
        dispatch=n, attempt=a, error_type="RuntimeError", error_message="x", will_retry=will_retry
    )


def failed(n: int = 1, a: int | None = 1) -> JobFailed:
    return JobFailed(dispatch=n, attempt=a, reason="all attempts failed")


class Log:
    """A hand-made log: streams of recorded events with positions and times."""

    def __init__(self) -> None:
        self.streams: dict[str, list[RecordedEvent]] = {}
        self.position = 0

    def add(self, job_id: str, *events: Event, seconds: float = 1.0) -> Log:
        stream = self.streams.setdefault(job_id, [])
        for event in events:
            self.position += 1
            at = T0 + timedelta(seconds=seconds * self.position)
            stream.append(
                RecordedEvent(
                    self.position, job_state.stream_id(job_id), len(stream) + 1, event, {}, at
                )
            )
        return self

    def evidence(self) -> Evidence:
        """Evidence of a run where the views, the tailer and the handler agree with the log."""
        executions = {}
        attempts: dict[str, dict[attempt.AttemptKey, tuple[Any, ...]]] = {}
        runs = []
        for job_id, events in self.streams.items():
            executions[job_id] = row_of(job_state.fold(events))
            rows: dict[attempt.AttemptKey, attempt.AttemptRow] = {}
            for recorded in events:
                attempt.apply(job_id, rows, recorded)
                if isinstance(recorded.event, JobStarted):
                    runs.append((job_id, recorded.event.dispatch, recorded.event.attempt))
            attempts[job_id] = {key: attempt.record(row) for key, row in rows.items()}
        positions = [r.position for events in self.streams.values() for r in events]
        return Evidence(
            streams=self.streams,
            log_positions=positions,
            seen_positions=sorted(positions),
            executions=executions,
            attempts=attempts,
            accepted=set(self.streams),
            runs=runs,
            now=(T0 + timedelta(hours=1)).timestamp(),
        )


def row_of(state: job_state.JobState | None) -> dict[str, Any]:
    """The view row holding ``state``, as the database hands it back (options decoded)."""
    assert state is not None
    row = dict(zip(execution.COLUMNS, execution.record(state), strict=True))
    row["options"] = orjson.loads(row["options"])
    return row


def good_log() -> Log:
    """Two jobs with every kind of history a healthy run has."""
    return (
        Log()
        .add(JOB, dispatched(JOB), started(), attempt_failed(), started(1, 2), completed(1, 2))
        .add(
            OTHER,
            dispatched(OTHER, not_before=T0.timestamp()),
            started(),
            attempt_failed(will_retry=False),
            failed(),
            dispatched(OTHER, 2, "replay"),
            JobCancelled(dispatch=2),
        )
    )


def test_a_healthy_run_has_no_violation() -> None:
    findings = checker.check(good_log().evidence())
    assert findings.ok, findings.describe()
    assert findings.statuses == {"completed": 1, "cancelled": 1}
    assert set(checker.VIOLATIONS) <= set(findings.counts)


def with_events(job_id: str, *events: Event) -> Log:
    log = good_log()
    log.add(job_id, *events)
    return log


BROKEN_LOGS: dict[str, Callable[[], Log]] = {
    "double_outcomes": lambda: with_events(OTHER, started(2), failed(2), completed(2)),
    "starts_after_outcome": lambda: with_events(OTHER, started(2), failed(2), started(2, 2)),
    "double_starts": lambda: with_events(OTHER, started(2), started(2)),
    "double_dispatches": lambda: with_events(OTHER, dispatched(OTHER, 2, "recovery")),
    "outcomes_without_start": lambda: with_events(OTHER, completed(2, 3)),
    "stuck": lambda: Log().add(JOB, dispatched(JOB), started()),
    "early_starts": lambda: Log().add(
        JOB, dispatched(JOB, not_before=(T0 + timedelta(seconds=30)).timestamp()), started()
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_LOGS))
def test_each_broken_history_is_reported(kind: str) -> None:
    findings = checker.check(BROKEN_LOGS[kind]().evidence())
    assert findings[kind] >= 1, findings.describe()
    assert findings.examples[kind], "a violation comes with an example"
    assert not findings.ok


def test_a_second_outcome_of_one_attempt_is_a_double_outcome() -> None:
    log = Log().add(JOB, dispatched(JOB), started(), attempt_failed(), completed())
    findings = checker.check(log.evidence())
    assert findings["double_outcomes"] == 1, findings.describe()


def test_an_outcome_for_a_superseded_dispatch_is_a_double_outcome() -> None:
    log = Log().add(JOB, dispatched(JOB), started(), dispatched(JOB, 2, "recovery"), completed())
    assert checker.check(log.evidence())["double_outcomes"] == 1


def test_a_late_cancel_before_the_running_attempt_completes_is_fine() -> None:
    log = Log().add(JOB, dispatched(JOB), started(), JobCancelled(dispatch=1), completed())
    findings = checker.check(log.evidence())
    assert findings.ok, findings.describe()
    assert findings.statuses == {"completed": 1}


def test_a_recovery_that_drops_the_remaining_delay_starts_early() -> None:
    due = (T0 + timedelta(seconds=60)).timestamp()
    log = Log().add(
        JOB,
        dispatched(JOB, not_before=due),
        dispatched(JOB, 2, "recovery"),  # the delay dropped: starts at once
        started(2),
        completed(2),
    )
    findings = checker.check(log.evidence())
    assert findings["early_starts"] == 1
    assert findings.max_early_seconds > 50


def test_a_job_delayed_past_the_end_of_the_run_is_waiting_not_stuck() -> None:
    later = (T0 + timedelta(days=2)).timestamp()
    log = Log().add(JOB, dispatched(JOB, not_before=later))
    findings = checker.check(log.evidence())
    assert findings.ok, findings.describe()
    assert findings.waiting == 1


def broken(change: Change) -> checker.Findings:
    evidence = good_log().evidence()
    change(evidence)
    return checker.check(evidence)


def _set(evidence: Evidence, **values: Any) -> None:
    for name, value in values.items():
        setattr(evidence, name, value)


def _view_status(evidence: Evidence) -> None:
    row = dict(evidence.executions[JOB])  # type: ignore[call-overload]
    row["status"] = "failed"
    evidence.executions = {**evidence.executions, JOB: row}


def _view_missing(evidence: Evidence) -> None:
    evidence.executions = {k: v for k, v in evidence.executions.items() if k != JOB}


def _attempt_row(evidence: Evidence) -> None:
    rows = dict(evidence.attempts[JOB])
    key = (1, 2)
    values = list(rows[key])
    values[attempt.COLUMNS.index("outcome")] = "failed"
    rows[key] = tuple(values)
    evidence.attempts = {**evidence.attempts, JOB: rows}


BROKEN_EVIDENCE: list[tuple[str, Change]] = [
    ("lost", lambda e: _set(e, accepted={*e.accepted, "33333333-3333-4333-8333-333333333333"})),
    ("view_mismatches", _view_status),
    ("view_mismatches", _view_missing),
    ("view_mismatches", _attempt_row),
    ("skipped", lambda e: _set(e, seen_positions=[p for p in e.seen_positions if p != 3])),
    ("seen_twice", lambda e: _set(e, seen_positions=[*e.seen_positions, 3])),
    ("double_runs", lambda e: _set(e, runs=[*e.runs, e.runs[0]])),
    ("runs_without_start", lambda e: _set(e, runs=[*e.runs, (JOB, 1, 9)])),
    ("idempotency_violations", lambda e: _set(e, keys={"k": KeyUse("tag-1111", (JOB, OTHER))})),
    ("idempotency_violations", lambda e: _set(e, keys={"k": KeyUse("second", (JOB, JOB))})),
    (
        "host_unexpected_errors",
        lambda e: _set(
            e, host_log='{"path": "/jobs/chaos", "event": "unexpected error", "exception": "E"}'
        ),
    ),
    (
        "host_tasks_stopped",
        lambda e: _set(e, host_log='{"task": "projections", "event": "background task stopped"}'),
    ),
    (
        "host_tasks_stopped",
        lambda e: _set(
            e,
            host_log='{"task": "relay", "event": "background task failed; restarting it", '
            '"exception": "Traceback ...\\nKeyError: 1"}',
        ),
    ),
    (
        "unclassified_errors",
        lambda e: _set(e, unclassified_errors={"InternalClientError: cannot switch": 2}),
    ),
    ("reader_crashes", lambda e: _set(e, reader_crashes={"EventStoreError": 1})),
    ("process_crashes", lambda e: _set(e, process_crashes=["host exited with 1: boom"])),
]


@pytest.mark.parametrize(("kind", "change"), BROKEN_EVIDENCE)
def test_each_broken_observation_is_reported(kind: str, change: Change) -> None:
    findings = broken(change)
    assert findings[kind] >= 1, findings.describe()
    assert not findings.ok


def test_the_first_request_of_a_key_is_the_one_kept() -> None:
    evidence = good_log().evidence()
    evidence.keys = {"k": KeyUse("tag-1111", (JOB, JOB))}
    assert checker.check(evidence).ok


def test_a_job_failed_within_its_handlers_budget_counts_as_failed_by_faults() -> None:
    doomed = dispatched(OTHER).model_copy(update={"payload": {"tag": "t", "fail_times": 99}})
    log = (
        Log()
        .add(JOB, dispatched(JOB), started(), attempt_failed(will_retry=False), failed())
        .add(OTHER, doomed, started(), attempt_failed(will_retry=False), failed())
    )
    findings = checker.check(log.evidence())
    assert findings.ok, findings.describe()  # a figure, not a violation
    assert findings.failed_by_faults == {"all attempts failed": 1}
    assert JOB in findings.failed_by_faults_examples[0]


def test_a_task_restarted_after_a_database_outage_is_no_violation() -> None:
    evidence = good_log().evidence()
    evidence.host_log = (
        '{"task": "relay", "event": "background task failed; restarting it", '
        '"error": "DatabaseUnavailableError: cannot connect"}'
    )
    assert checker.check(evidence).ok
