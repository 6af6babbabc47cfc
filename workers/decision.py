"""The delivery path's decisions, as pure functions of a job's state (DESIGN.md rules 1–5).

Each function returns what to append and how to answer; the shell (``attempt.py``) does the
I/O and, when an append loses a race on the stream version, folds again and asks again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from jobstore import JOB_STATUSES, Event, JobState, job_events


@dataclass(frozen=True, slots=True)
class Answer:
    """How the host answers a delivery: the one answer type, made HTTP in ``respond``."""

    status: int
    reason: str
    non_retryable: bool = False
    retry_after: int | None = None
    result: Any = None


@dataclass(frozen=True, slots=True)
class Respond:
    """Append ``events`` (maybe none) and answer, without running the handler."""

    answer: Answer
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Start:
    """Record these events (ending with JobStarted) and run the handler as ``attempt``."""

    attempt: int
    lease_until: float
    events: list[Event]


Decision = Respond | Start


def decide_delivery(
    state: JobState,
    dispatch: int,
    message_id: str | None,
    now: float,
    grace: float,
) -> Decision:
    """What to do with a delivery of ``dispatch`` for a job in ``state``.

    The attempt number comes from the job's own history only: ``Upstash-Retried`` is an
    unsigned header, so it can never skip attempts or spend the job's retry budget.  Every
    ``JobStarted`` of the dispatch counts (abandoned ones too); once the job's retries are
    spent, the delivery fails the job and answers 489, whatever QStash's own count says.
    """
    if dispatch != state.dispatch:
        return Respond(Answer(489, f"dispatch {dispatch} is superseded by {state.dispatch}", True))
    if state.status is JOB_STATUSES.CANCELLED:
        return Respond(Answer(489, "job is cancelled", non_retryable=True))
    if state.status in (JOB_STATUSES.COMPLETED, JOB_STATUSES.FAILED):
        return Respond(Answer(200, f"job already {state.status.value}"))
    if state.lease_until is not None and state.lease_until > now:
        wait = max(1, math.ceil(state.lease_until - now))
        return Respond(Answer(503, f"attempt {state.attempt} is still running", retry_after=wait))
    spent = state.attempt >= attempts_allowed(state)
    events: list[Event] = []
    if state.lease_until is not None:  # an attempt started, never finished, lease expired
        events.append(abandoned(state, will_retry=not spent))
    if spent:  # the host owns the budget: QStash's headroom is not the job's to use
        events.append(
            job_events.JobFailed(
                dispatch=dispatch,
                attempt=state.attempt,
                reason=f"all {state.attempt} attempts were used",
                error_type="AttemptAbandoned" if state.lease_until is not None else None,
                error_message=state.last_error,
            )
        )
        answer = Answer(489, f"the job's {state.attempt} attempts are used; job failed", True)
        return Respond(answer, events)
    attempt = state.attempt + 1
    lease_until = now + state.options.lease_seconds + grace
    events.append(
        job_events.JobStarted(
            dispatch=dispatch, attempt=attempt, message_id=message_id, lease_until=lease_until
        )
    )
    return Start(attempt, lease_until, events)


def decide_heartbeat(
    state: JobState, dispatch: int, attempt: int, now: float, grace: float, deadline: float
) -> tuple[list[Event], float | None]:
    """Extend the lease of a running attempt that said it is alive; the lease end, or None
    when the attempt was closed meanwhile.

    Coalesced: recorded only once less than half a lease is left (at most one
    ``JobHeartbeat`` per half lease), and never beyond ``deadline`` (its timeout).
    """
    if not attempt_open(state, dispatch, attempt):
        return [], None
    lease = state.lease_until
    assert lease is not None  # an open attempt holds a lease
    window = state.options.lease_seconds
    extended = min(now + window + grace, deadline)
    if lease - now > window / 2 or extended <= lease:
        return [], lease
    return [
        job_events.JobHeartbeat(dispatch=dispatch, attempt=attempt, lease_until=extended)
    ], extended


def abandoned(state: JobState, *, will_retry: bool = True) -> job_events.JobAttemptFailed:
    """The record of an attempt that outlived its lease without an outcome (a crash)."""
    return job_events.JobAttemptFailed(
        dispatch=state.dispatch,
        attempt=state.attempt,
        error_type="AttemptAbandoned",
        error_message="no outcome was recorded before the attempt's lease ended "
        "(the host crashed or stalled)",
        will_retry=will_retry,
        abandoned=True,
    )


def attempts_allowed(state: JobState) -> int:
    """How many handler attempts the job's current run gets: the first plus its retries
    (a recovery dispatch continues its predecessor's count; a replay starts afresh)."""
    return state.max_retries + 1


def attempt_open(state: JobState, dispatch: int, attempt: int) -> bool:
    """Whether ``attempt`` of ``dispatch`` is still the job's running attempt: started and
    not closed by an outcome, an abandonment, QStash's verdict or a newer dispatch (each of
    those clears the lease; a cancel request does not, so a running attempt still counts)."""
    return state.dispatch == dispatch and state.attempt == attempt and state.lease_until is not None


def _closed_how(state: JobState, dispatch: int, attempt: int) -> str:
    """Why an outcome of ``attempt`` of ``dispatch`` no longer counts, in words."""
    if state.dispatch != dispatch:
        return f"dispatch {dispatch} was superseded by dispatch {state.dispatch} ({state.source})"
    if state.attempt != attempt:
        return f"attempt {attempt} was recorded abandoned and attempt {state.attempt} followed"
    if state.finished:
        return f"the job was already {state.status.value} when the outcome arrived"
    return f"attempt {attempt} was already recorded abandoned"


def late_report(
    state: JobState,
    reported: job_events.JobCompleted | job_events.JobAttemptFailed,
) -> job_events.JobOutcomeLate:
    """The history's record of an outcome that came after its attempt was closed."""
    if isinstance(reported, job_events.JobCompleted):
        return job_events.JobOutcomeLate(
            dispatch=reported.dispatch,
            attempt=reported.attempt,
            reported="completed",
            closed=_closed_how(state, reported.dispatch, reported.attempt),
            duration_seconds=reported.duration_seconds,
            result=reported.result,
        )
    return job_events.JobOutcomeLate(
        dispatch=reported.dispatch,
        attempt=reported.attempt,
        reported="failed",
        closed=_closed_how(state, reported.dispatch, reported.attempt),
        duration_seconds=reported.duration_seconds,
        error_type=reported.error_type,
        error_message=reported.error_message,
    )


def decide_success(
    state: JobState, dispatch: int, attempt: int, duration: float, result: object
) -> list[Event]:
    """Record a finished attempt (even after a cancel request: the attempt did run); an
    attempt closed meanwhile gets a late report instead, and the job keeps its status."""
    completed = job_events.JobCompleted(
        dispatch=dispatch, attempt=attempt, duration_seconds=duration, result=result
    )
    if not attempt_open(state, dispatch, attempt):
        return [late_report(state, completed)]
    return [completed]


def decide_failure(
    state: JobState,
    dispatch: int,
    attempt: int,
    error: BaseException,
    traceback_text: str | None,
    duration: float,
    *,
    retryable: bool,
    retry_after: float | None = None,
) -> list[Event]:
    """Record a failed attempt, and the job's failure when no attempt will follow; an
    attempt closed meanwhile gets a late report instead, and the job keeps its status."""
    will_retry = (
        retryable
        and attempt < attempts_allowed(state)
        and state.status is not JOB_STATUSES.CANCELLED
    )
    message = str(error) or type(error).__name__
    failed = job_events.JobAttemptFailed(
        dispatch=dispatch,
        attempt=attempt,
        error_type=type(error).__name__,
        error_message=message[:2000],
        traceback=traceback_text,
        will_retry=will_retry,
        duration_seconds=duration,
        retry_after_seconds=retry_after if will_retry else None,
    )
    if not attempt_open(state, dispatch, attempt):
        return [late_report(state, failed)]
    events: list[Event] = [failed]
    if not will_retry and state.status is not JOB_STATUSES.CANCELLED:
        reason = "non-retryable error" if not retryable else f"all {attempt} attempts failed"
        events.append(
            job_events.JobFailed(
                dispatch=dispatch,
                attempt=attempt,
                reason=reason,
                error_type=type(error).__name__,
                error_message=message[:2000],
            )
        )
    return events


def decide_qstash_gave_up(state: JobState, dispatch: int, now: float) -> Respond:
    """QStash's failure callback for ``dispatch``: fail the job, once no lease is live."""
    if dispatch != state.dispatch or state.finished:
        return Respond(Answer(200, "nothing to do: dispatch superseded or job finished"))
    if state.lease_until is not None and state.lease_until > now:
        wait = max(1, math.ceil(state.lease_until - now))
        return Respond(Answer(503, "an attempt is still running", retry_after=wait))
    events: list[Event] = []
    if state.lease_until is not None:
        events.append(abandoned(state).model_copy(update={"will_retry": False}))
    events.append(
        job_events.JobFailed(
            dispatch=dispatch,
            attempt=state.attempt or None,
            reason="QStash gave up delivering this dispatch",
            error_type=None,
            error_message=state.last_error,
        )
    )
    return Respond(Answer(200, "job failed by QStash's verdict"), events)


def decide_sweep(state: JobState, dispatch: int, qstash_state: str, now: float) -> list[Event]:
    """What the sweeper records for an unfinished dispatch, given what QStash says of it.

    ``qstash_state`` is ``pending`` (waiting, delivering or retrying: QStash still has it),
    ``failed`` (failed or in the DLQ) or ``unknown`` (QStash has no record: it was lost).
    """
    if state.finished or dispatch != state.dispatch:
        return []
    if state.lease_until is not None and state.lease_until > now:
        return []
    if qstash_state == "pending":
        return []
    spent = state.attempt >= attempts_allowed(state)
    retry = qstash_state == "unknown" and not spent
    events: list[Event] = []
    if state.lease_until is not None:
        events.append(abandoned(state, will_retry=retry))
    if not retry:
        reason = (
            "QStash reports the message failed (sweeper)"
            if qstash_state == "failed"
            else f"all {state.attempt} attempts were used; QStash lost the message (sweeper)"
        )
        events.append(
            job_events.JobFailed(
                dispatch=dispatch,
                attempt=state.attempt or None,
                reason=reason,
                error_type=None,
                error_message=state.last_error,
            )
        )
        return events
    events.append(
        job_events.JobDispatched(
            job_id=state.job_id,
            dispatch=dispatch + 1,
            job_type=state.job_type,
            payload=state.payload,
            metadata=state.metadata,
            options=state.options.remaining_delay(now),  # a lost delayed job still waits
            source="recovery",
            reason=f"QStash has no record of dispatch {dispatch}'s message; dispatched again",
        )
    )
    return events
