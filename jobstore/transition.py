"""Seed-compatible status updates (``update_job_execution``) as events, never UPDATEs.

The seed changed a row's status in place; here a requested status becomes the event that
means it, and a transition that makes no sense (completed → processing) is a JobError.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from jobstore import errors
from jobstore.event import Event
from jobstore.job_events import JobCompleted, JobFailed, JobStarted
from jobstore.job_state import JobState, decide_cancel, decide_replay
from jobstore.registry import JOB_STATUSES

_ALLOWED: dict[JOB_STATUSES, set[JOB_STATUSES]] = {
    JOB_STATUSES.PENDING: {JOB_STATUSES.PROCESSING, JOB_STATUSES.CANCELLED, JOB_STATUSES.FAILED},
    JOB_STATUSES.PROCESSING: {JOB_STATUSES.COMPLETED, JOB_STATUSES.FAILED, JOB_STATUSES.CANCELLED},
    JOB_STATUSES.RETRYING: {JOB_STATUSES.PROCESSING, JOB_STATUSES.FAILED, JOB_STATUSES.CANCELLED},
    JOB_STATUSES.FAILED: {JOB_STATUSES.PENDING},
    JOB_STATUSES.CANCELLED: {JOB_STATUSES.PENDING},
    JOB_STATUSES.COMPLETED: set(),
}


def decide_update(state: JobState, updates: Mapping[str, Any]) -> list[Event]:
    """The events that carry out a seed-style status update of ``state``."""
    unknown = set(updates) - {"status", "error", "result", "duration_seconds", "reason"}
    if unknown:
        raise errors.JobError(
            f"cannot update {', '.join(sorted(unknown))}: a job's data is its events; "
            "only status (with error, result, duration_seconds or reason) can change",
            code="INVALID_UPDATE",
            job_id=state.job_id,
        )
    try:
        target = JOB_STATUSES(str(updates.get("status")))
    except ValueError:
        valid = ", ".join(s.value for s in JOB_STATUSES)
        raise errors.JobError(
            f"status {updates.get('status')!r} is not one of {valid}",
            "INVALID_UPDATE",
            state.job_id,
        ) from None
    if target not in _ALLOWED[state.status]:
        raise errors.JobError(
            f"job {state.job_id} cannot go from {state.status.value} to {target.value}",
            code="INVALID_TRANSITION",
            job_id=state.job_id,
        )
    return _events_for(state, target, updates)


def _events_for(state: JobState, target: JOB_STATUSES, updates: Mapping[str, Any]) -> list[Event]:
    attempt = max(state.attempt, 1)
    match target:
        case JOB_STATUSES.PROCESSING:
            lease = time.time() + state.options.timeout
            return [
                JobStarted(dispatch=state.dispatch, attempt=state.attempt + 1, lease_until=lease)
            ]
        case JOB_STATUSES.COMPLETED:
            return [
                JobCompleted(
                    dispatch=state.dispatch,
                    attempt=attempt,
                    duration_seconds=float(updates.get("duration_seconds", 0)),
                    result=updates.get("result"),
                )
            ]
        case JOB_STATUSES.FAILED:
            error = str(updates.get("error") or "marked failed")
            return [
                JobFailed(
                    dispatch=state.dispatch,
                    attempt=state.attempt or None,
                    reason=error,
                    error_type="Error",
                    error_message=error,
                )
            ]
        case JOB_STATUSES.CANCELLED:
            return decide_cancel(state, updates.get("reason"))
        case JOB_STATUSES.PENDING:
            return decide_replay(state, updates.get("reason") or "status set to pending")
        case _:
            raise errors.JobError(
                f"status {target.value} is recorded by the worker, not set directly",
                code="INVALID_TRANSITION",
                job_id=state.job_id,
            )
