"""A ``job_attempts`` row (one attempt of one dispatch) and the pure fold that keeps it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

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


_PER_ATTEMPT = frozenset(
    {job_events.JobStarted, job_events.JobCompleted, job_events.JobAttemptFailed}
)


def key_of(recorded: RecordedEvent) -> AttemptKey | None:
    """The attempt an event is about, if it is about one."""
    event = recorded.event
    kind = type(event)  # exact types: isinstance on pydantic models is slow, and called a lot
    if kind in _PER_ATTEMPT:
        started = cast(job_events.JobStarted, event)  # all three carry dispatch and attempt
        return (started.dispatch, started.attempt)
    if kind is job_events.JobFailed:
        failed = cast(job_events.JobFailed, event)
        return None if failed.attempt is None else (failed.dispatch, failed.attempt)
    return None


def evolve(job_id: str, attempts: dict[AttemptKey, AttemptRow], recorded: RecordedEvent) -> None:
    """Apply one event of job ``job_id`` to its ``attempts`` (changed in place)."""
    event, at = recorded.event, recorded.recorded_at
    match event:
        case job_events.JobStarted():
            row = _row(job_id, attempts, event.dispatch, event.attempt)
            row.started_at = row.started_at or at
            row.message_id = event.message_id
            row.lease_until = event.lease_until
        case job_events.JobCompleted():
            row = _row(job_id, attempts, event.dispatch, event.attempt)
            row.outcome = Outcome.COMPLETED
            row.finished_at = at
            row.duration_seconds = event.duration_seconds
        case job_events.JobAttemptFailed():
            row = _row(job_id, attempts, event.dispatch, event.attempt)
            row.outcome = Outcome.ABANDONED if event.abandoned else Outcome.FAILED
            row.finished_at = at
            row.duration_seconds = event.duration_seconds
            row.error_type = event.error_type
            row.error_message = event.error_message
            row.will_retry = event.will_retry
            row.abandoned = event.abandoned
        case job_events.JobFailed():
            _fail_running(attempts, event, at)
        case _:
            pass  # dispatches and cancellations start or stop no attempt


def _fail_running(
    attempts: dict[AttemptKey, AttemptRow], event: job_events.JobFailed, at: datetime
) -> None:
    """A dispatch's final failure ends its named attempt if that one was still running."""
    if event.attempt is None:
        return
    row = attempts.get((event.dispatch, event.attempt))
    if row is None or row.outcome != Outcome.RUNNING:
        return
    row.outcome = Outcome.FAILED
    row.finished_at = at
    row.error_type = event.error_type
    row.error_message = event.error_message or event.reason
    row.will_retry = False


def _row(
    job_id: str, attempts: dict[AttemptKey, AttemptRow], dispatch: int, attempt: int
) -> AttemptRow:
    row = attempts.get((dispatch, attempt))
    if row is None:
        row = attempts[(dispatch, attempt)] = AttemptRow(job_id, dispatch, attempt, Outcome.RUNNING)
    return row
