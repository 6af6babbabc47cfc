"""A job's state as a fold over its events (the one job model), and the dispatcher's decisions.

``apply(state, recorded)`` changes a state in place (the views fold millions of events
through it on a rebuild); ``evolve(state, recorded) -> state`` is its pure form, and
``fold(events)`` the state of a whole stream.  ``decide_*`` functions take a state and
return the events to append (or raise JobError), so every rule is testable without I/O.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, assert_never

from pydantic import BaseModel, ConfigDict

from jobstore import errors
from jobstore.event import Event, RecordedEvent
from jobstore.job_events import (
    JobAttemptFailed,
    JobCancelled,
    JobCompleted,
    JobDispatched,
    JobEvent,
    JobFailed,
    JobHeartbeat,
    JobNotified,
    JobOutcomeLate,
    JobStarted,
    is_job_event,
)
from jobstore.options import DispatchOptions
from jobstore.registry import JOB_STATUSES

FINISHED = frozenset({JOB_STATUSES.COMPLETED, JOB_STATUSES.FAILED, JOB_STATUSES.CANCELLED})
STREAM_PREFIX: Final = "job-"
"""What every job stream's id starts with (the job id follows)."""
_BIGINT_MAX: Final = 2**63 - 1


def stream_id(job_id: str) -> str:
    """The event stream of a job."""
    return STREAM_PREFIX + job_id


def job_id_of(stream: str) -> str | None:
    """The job id of a job stream (``job-<id>``), or None for other streams."""
    return stream[len(STREAM_PREFIX) :] if stream.startswith(STREAM_PREFIX) else None


@dataclasses.dataclass(slots=True)
class JobState:
    """Everything the log says about one job, folded (the ``job_executions`` view holds it
    field for field).  Changed only by ``apply``: take ``evolve`` to keep a state as it is."""

    job_id: str
    job_type: str
    status: JOB_STATUSES
    payload: dict[str, Any]
    metadata: dict[str, Any]
    user_id: int | None
    """``metadata["user_id"]`` if it is an integer that fits a bigint, else None."""
    organization_id: int | None
    options: DispatchOptions
    """The current dispatch's options."""
    dispatch: int
    source: str
    created_at: datetime
    version: int
    """The stream version of the last event folded."""
    position: int
    """The log position of the last event folded."""
    attempt: int = 0
    attempts: int = 0
    """Attempts started, over every dispatch."""
    lease_until: float | None = None
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


def apply(state: JobState | None, recorded: RecordedEvent) -> JobState:
    """``state`` changed in place by ``recorded`` (None: a new state from the job's first
    event, which must be JobDispatched)."""
    event = recorded.event
    if state is None:
        return _first(recorded)
    if not is_job_event(event):
        raise errors.EventStoreError(f"{event.type_name} does not belong to a job stream")
    _apply(state, event, recorded.recorded_at)
    state.version = recorded.version
    state.position = recorded.position
    return state


def evolve(state: JobState | None, recorded: RecordedEvent) -> JobState:
    """The state after ``recorded``; ``state`` itself is left as it was."""
    return apply(None if state is None else copy.copy(state), recorded)


def fold(events: Iterable[RecordedEvent]) -> JobState | None:
    """The state after all ``events`` (None for an empty stream)."""
    state: JobState | None = None
    for recorded in events:
        state = apply(state, recorded)
    return state


def _first(recorded: RecordedEvent) -> JobState:
    event = recorded.event
    if not isinstance(event, JobDispatched):
        raise errors.EventStoreError(
            f"stream {recorded.stream_id!r} starts with {event.type_name}, not job.dispatched"
        )
    metadata = event.metadata
    schedule_id = metadata.get("schedule_id")
    return JobState(
        job_id=job_id_of(recorded.stream_id) or event.job_id,
        job_type=event.job_type,
        status=JOB_STATUSES.PENDING,
        payload=event.payload,
        metadata=metadata,
        user_id=_bigint(metadata.get("user_id")),
        organization_id=_bigint(metadata.get("organization_id")),
        options=event.options,
        dispatch=event.dispatch,
        source=event.source,
        created_at=recorded.recorded_at,
        version=recorded.version,
        position=recorded.position,
        schedule_id=schedule_id if isinstance(schedule_id, str) else None,
    )


def _apply(state: JobState, event: JobEvent, at: datetime) -> None:
    match event:
        case JobDispatched():
            state.dispatch = event.dispatch
            state.source = event.source
            state.payload = event.payload
            state.options = event.options
            state.status = JOB_STATUSES.PENDING
            if event.source != "recovery":  # a recovery continues its run's attempt count
                state.attempt = 0
            state.lease_until = None
            state.cancel_requested = False
            state.failed_at = None
            state.cancelled_at = None
            state.replay_count += event.source == "replay"
        case JobStarted():
            if not state.cancel_requested:
                state.status = JOB_STATUSES.PROCESSING
            state.attempt = event.attempt
            state.lease_until = event.lease_until
            state.attempts += 1
            state.message_id = event.message_id
            state.started_at = state.started_at or at
        case JobCompleted():
            state.status = JOB_STATUSES.COMPLETED
            state.lease_until = None
            state.completed_at = at
            state.ever_completed = True
            state.duration_seconds = event.duration_seconds
            state.result = event.result
        case JobAttemptFailed():
            if event.will_retry and not state.cancel_requested:
                state.status = JOB_STATUSES.RETRYING
            state.lease_until = None
            state.last_error = f"{event.error_type}: {event.error_message}"
        case JobFailed():
            state.status = JOB_STATUSES.FAILED
            state.lease_until = None
            state.failed_at = at
            if event.error_message is not None:
                state.last_error = f"{event.error_type or 'Error'}: {event.error_message}"
        case JobCancelled():
            state.status = JOB_STATUSES.CANCELLED
            state.cancel_requested = True
            state.cancelled_at = at
        case JobNotified():
            pass  # a record of a callback call: the job's state stays as its outcome left it
        case JobHeartbeat():
            # Only the open attempt it names is extended; a late heartbeat changes nothing.
            if (
                state.lease_until is not None
                and (state.dispatch, state.attempt) == (event.dispatch, event.attempt)
                and event.lease_until > state.lease_until
            ):
                state.lease_until = event.lease_until
        case JobOutcomeLate():
            pass  # an outcome after its attempt was closed: history only, no status changes
        case _:
            assert_never(event)


def _bigint(value: object) -> int | None:
    """A metadata id that fits the view's bigint column, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= -_BIGINT_MAX:
        return value if value <= _BIGINT_MAX else None
    return None


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
    now: float | None = None,
) -> list[Event]:
    """Dispatch a failed job (or a cancelled one that never completed) again.

    ``payload`` and ``options`` (already valid for the job's type) replace the previous
    dispatch's; the history keeps the original in its earlier ``JobDispatched``.  Kept
    options keep the delay that is left at ``now`` (default: the clock's time).
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
            options=state.options.remaining_delay(time.time() if now is None else now)
            if options is None
            else options,
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
            user_id=state.user_id,
            organization_id=state.organization_id,
            dispatch=state.dispatch,
            attempts=state.attempts,
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
