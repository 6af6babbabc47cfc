"""A ``job_attempts`` row (one attempt of one dispatch) and the pure fold that keeps it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any, assert_never

from jobstore import RecordedEvent, job_events


class Outcome(StrEnum):
    """How an attempt ended (or that it has not yet)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"


AttemptKey = tuple[int, int]
"""(dispatch, attempt) within one job."""


@dataclass(slots=True)
class AttemptRow:
    """One attempt as the ``job_attempts`` view holds it (column for column)."""

    job_id: str
    dispatch: int
    attempt: int
    outcome: str
    message_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_until: float | None = None
    duration_seconds: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    will_retry: bool | None = None
    abandoned: bool = False


COLUMNS: tuple[str, ...] = tuple(AttemptRow.__dataclass_fields__)
_values = attrgetter(*COLUMNS)


def record(row: AttemptRow) -> tuple[Any, ...]:
    """The view's row: its values in ``COLUMNS`` order."""
    values: tuple[Any, ...] = _values(row)
    return values


def apply(
    job_id: str, attempts: dict[AttemptKey, AttemptRow], recorded: RecordedEvent
) -> AttemptKey | None:
    """Apply one event of job ``job_id`` to its ``attempts`` (changed in place); return the
    attempt it changed, if any."""
    event, at = recorded.event, recorded.recorded_at
    if not job_events.is_job_event(event):
        return None  # not a job's event: the job_executions view names it as an error
    match event:  # the most frequent first: each case is an isinstance check
        case job_events.JobStarted():
            row = _row(job_id, attempts, event.dispatch, event.attempt)
            row.started_at = row.started_at or at
            row.message_id = event.message_id
            row.lease_until = event.lease_until
            return (event.dispatch, event.attempt)
        case job_events.JobCompleted():
            row = _row(job_id, attempts, event.dispatch, event.attempt)
            row.outcome = Outcome.COMPLETED
            row.finished_at = at
            row.duration_seconds = event.duration_seconds
            return (event.dispatch, event.attempt)
        case job_events.JobDispatched():
            return None  # a dispatch starts no attempt
        case job_events.JobAttemptFailed():
            row = _row(job_id, attempts, event.dispatch, event.attempt)
            row.outcome = Outcome.ABANDONED if event.abandoned else Outcome.FAILED
            row.finished_at = at
            row.duration_seconds = event.duration_seconds
            row.error_type = event.error_type
            row.error_message = event.error_message
            row.will_retry = event.will_retry
            row.abandoned = event.abandoned
            return (event.dispatch, event.attempt)
        case job_events.JobFailed():
            return _fail_running(attempts, event, at)
        case job_events.JobCancelled():
            return None  # future attempts stop; a running one still records its outcome
        case job_events.JobNotified():
            return None  # a callback call about an outcome: no attempt changes
        case job_events.JobHeartbeat():
            running = attempts.get((event.dispatch, event.attempt))
            if running is None or running.outcome != Outcome.RUNNING:
                return None
            running.lease_until = max(running.lease_until or 0.0, event.lease_until)
            return (event.dispatch, event.attempt)
        case job_events.JobOutcomeLate():
            return None  # the attempt was closed before: its row keeps that first outcome
        case _:
            assert_never(event)


def _fail_running(
    attempts: dict[AttemptKey, AttemptRow], event: job_events.JobFailed, at: datetime
) -> AttemptKey | None:
    """A dispatch's final failure ends its named attempt if that one was still running."""
    if event.attempt is None:
        return None
    key = (event.dispatch, event.attempt)
    row = attempts.get(key)
    if row is None or row.outcome != Outcome.RUNNING:
        return None
    row.outcome = Outcome.FAILED
    row.finished_at = at
    row.error_type = event.error_type
    row.error_message = event.error_message or event.reason
    row.will_retry = False
    return key


def _row(
    job_id: str, attempts: dict[AttemptKey, AttemptRow], dispatch: int, attempt: int
) -> AttemptRow:
    row = attempts.get((dispatch, attempt))
    if row is None:
        row = attempts[(dispatch, attempt)] = AttemptRow(job_id, dispatch, attempt, Outcome.RUNNING)
    return row
