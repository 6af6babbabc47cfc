"""A job's current state as a fold over its events, and the dispatcher's decisions.

``evolve(state, recorded) -> state`` is pure; ``decide_*`` functions take a state and
return the events to append (or raise JobError), so every rule is testable without I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from jobstore import errors
from jobstore.event import Event, RecordedEvent
from jobstore.job_events import (
    JobAttemptFailed,
    JobCancelled,
    JobCompleted,
    JobDispatched,
    JobFailed,
    JobStarted,
)
from jobstore.options import DispatchOptions
from jobstore.registry import JOB_STATUSES

FINISHED = frozenset({JOB_STATUSES.COMPLETED, JOB_STATUSES.FAILED, JOB_STATUSES.CANCELLED})


def stream_id(job_id: str) -> str:
    """The event stream of a job."""
    return f"job-{job_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class JobState:
    """Everything the log says about one job, folded."""

    job_id: str
    version: int
    job_type: str
    payload: dict[str, Any]
    metadata: dict[str, Any]
    options: DispatchOptions
    dispatch: int
    source: str
    status: JOB_STATUSES
    created_at: datetime
    attempt: int = 0
    lease_until: float | None = None
    attempts_total: int = 0
    ever_completed: bool = False
    cancel_requested: bool = False
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None
    duration_seconds: float | None = None
    last_error: str | None = None
    result: Any = None
    message_id: str | None = None
    replay_count: int = 0
    schedule_id: str | None = None

    @property
    def finished(self) -> bool:
        """Completed, failed or cancelled: no attempt of the current dispatch will run."""
        return self.status in FINISHED

    @property
    def max_retries(self) -> int:
        """The retries of the current dispatch (from its options)."""
        return self.options.retries


def evolve(state: JobState | None, recorded: RecordedEvent) -> JobState:
    """The state after ``recorded``; the first event of a job must be JobDispatched."""
    event, at = recorded.event, recorded.recorded_at
    if state is None:
        if not isinstance(event, JobDispatched):
            raise errors.EventStoreError(
                f"stream {recorded.stream_id!r} starts with {event.type_name}, not job.dispatched"
            )
        return JobState(
            job_id=event.job_id,
            version=recorded.version,
            job_type=event.job_type,
            payload=event.payload,
            metadata=event.metadata,
            options=event.options,
            dispatch=event.dispatch,
            source=event.source,
            status=JOB_STATUSES.PENDING,
            created_at=at,
            schedule_id=event.metadata.get("schedule_id"),
        )
    return dataclasses.replace(_apply(state, event, at), version=recorded.version)


def _apply(state: JobState, event: Event, at: datetime) -> JobState:
    replace = dataclasses.replace
    match event:
        case JobDispatched():
            return replace(
                state,
                dispatch=event.dispatch,
                source=event.source,
                payload=event.payload,
                options=event.options,
                status=JOB_STATUSES.PENDING,
                attempt=0,
                lease_until=None,
                cancel_requested=False,
                failed_at=None,
                cancelled_at=None,
                replay_count=state.replay_count + (event.source == "replay"),
            )
        case JobStarted():
            return replace(
                state,
                status=JOB_STATUSES.PROCESSING if not state.cancel_requested else state.status,
                attempt=event.attempt,
                lease_until=event.lease_until,
                attempts_total=state.attempts_total + 1,
                message_id=event.message_id,
                started_at=state.started_at or at,
            )
        case JobCompleted():
            return replace(
                state,
                status=JOB_STATUSES.COMPLETED,
                lease_until=None,
                completed_at=at,
                ever_completed=True,
                duration_seconds=event.duration_seconds,
                result=event.result,
            )
        case JobAttemptFailed():
            retrying = event.will_retry and not state.cancel_requested
            return replace(
                state,
                lease_until=None,
                status=JOB_STATUSES.RETRYING if retrying else state.status,
                last_error=f"{event.error_type}: {event.error_message}",
            )
        case JobFailed():
            return replace(
                state,
                status=JOB_STATUSES.FAILED,
                lease_until=None,
                failed_at=at,
                last_error=state.last_error
                if event.error_message is None
                else f"{event.error_type or 'Error'}: {event.error_message}",
            )
        case JobCancelled():
            return replace(
                state, status=JOB_STATUSES.CANCELLED, cancel_requested=True, cancelled_at=at
            )
        case _:
            raise errors.EventStoreError(f"{event.type_name} does not belong to a job stream")


def fold(events: Iterable[RecordedEvent]) -> JobState | None:
    """The state after all ``events`` (None for an empty stream)."""
    state: JobState | None = None
    for recorded in events:
        state = evolve(state, recorded)
    return state


def decide_cancel(state: JobState, reason: str | None) -> list[Event]:
    """Cancel future attempts of the current dispatch; a finished job cannot be cancelled."""
    if state.finished:
        raise errors.JobError(
            f"job {state.job_id} is {state.status.value}; only pending, processing or "
            "retrying jobs can be cancelled",
            code="JOB_FINISHED",
            job_id=state.job_id,
        )
    return [JobCancelled(dispatch=state.dispatch, reason=reason)]


def decide_replay(
    state: JobState,
    reason: str | None,
    payload: dict[str, Any] | None = None,
    options: DispatchOptions | None = None,
) -> list[Event]:
    """Dispatch a failed job (or a cancelled one that never completed) again.

    ``payload`` and ``options`` (already valid for the job's type) replace the previous
    dispatch's; the history keeps the original in its earlier ``JobDispatched``.
    """
    replayable = state.status is JOB_STATUSES.FAILED or (
        state.status is JOB_STATUSES.CANCELLED and not state.ever_completed
    )
    if not replayable:
        raise errors.JobError(
            f"job {state.job_id} is {state.status.value}; only failed jobs and cancelled jobs "
            "that never completed can be replayed",
            code="NOT_REPLAYABLE",
            job_id=state.job_id,
        )
    return [
        JobDispatched(
            job_id=state.job_id,
            dispatch=state.dispatch + 1,
            job_type=state.job_type,
            payload=state.payload if payload is None else payload,
            metadata=state.metadata,
            options=state.options.without_delay() if options is None else options,
            source="replay",
            reason=reason,
        )
    ]


class JobExecution(BaseModel):
    """The seed's JobExecution record, derived from a job's events."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    job_type: str
    status: JOB_STATUSES
    payload: dict[str, Any]
    metadata: dict[str, Any]
    user_id: int | None
    organization_id: int | None
    dispatch: int
    attempts: int
    max_retries: int
    error: str | None
    result: Any = None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    duration_seconds: float | None
    message_id: str | None
    schedule_id: str | None
    replay_count: int

    @classmethod
    def from_state(cls, state: JobState) -> JobExecution:
        """The execution record of a folded job."""
        return cls(
            job_id=state.job_id,
            job_type=state.job_type,
            status=state.status,
            payload=state.payload,
            metadata=state.metadata,
            user_id=state.metadata.get("user_id"),
            organization_id=state.metadata.get("organization_id"),
            dispatch=state.dispatch,
            attempts=state.attempts_total,
            max_retries=state.max_retries,
            error=state.last_error,
            result=state.result,
            created_at=state.created_at,
            started_at=state.started_at,
            completed_at=state.completed_at,
            failed_at=state.failed_at,
            duration_seconds=state.duration_seconds,
            message_id=state.message_id,
            schedule_id=state.schedule_id,
            replay_count=state.replay_count,
        )
