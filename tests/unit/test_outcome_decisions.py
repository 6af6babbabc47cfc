"""An attempt's outcome counts only while the attempt is open; afterwards it is a late report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jobstore
from jobstore import JOB_STATUSES, job_events, job_state
from workers import decision, history

JOB_ID = "9b2f6c1e-4b7a-4e57-8d1a-0c6a1f2b3c4d"


def fold(*events: jobstore.Event) -> jobstore.JobState:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    state = job_state.fold(
        jobstore.RecordedEvent(
            position=i + 1,
            stream_id=f"job-{JOB_ID}",
            version=i + 1,
            event=event,
            metadata={},
            recorded_at=start + timedelta(seconds=i),
        )
        for i, event in enumerate(events)
    )
    assert state is not None
    return state


DISPATCHED = job_events.JobDispatched(
    job_id=JOB_ID, dispatch=1, job_type="t", payload={}, options={"retries": 2}
)
STARTED = job_events.JobStarted(dispatch=1, attempt=1, lease_until=1e9)
ABANDONED = job_events.JobAttemptFailed(
    dispatch=1,
    attempt=1,
    error_type="AttemptAbandoned",
    error_message="x",
    will_retry=False,
    abandoned=True,
)
FAILED = job_events.JobFailed(dispatch=1, attempt=1, reason="QStash gave up")


def test_an_open_attempt_records_its_outcome_even_after_a_cancel_request() -> None:
    state = fold(DISPATCHED, STARTED, job_events.JobCancelled(dispatch=1))
    (event,) = decision.decide_success(state, 1, 1, 0.1, None)
    assert isinstance(event, job_events.JobCompleted)


def test_a_completion_after_the_job_failed_is_a_late_report_that_changes_no_status() -> None:
    state = fold(DISPATCHED, STARTED, ABANDONED, FAILED)
    (late,) = decision.decide_success(state, 1, 1, 2.5, {"ok": True})
    assert isinstance(late, job_events.JobOutcomeLate)
    assert (late.reported, late.result, late.duration_seconds) == ("completed", {"ok": True}, 2.5)
    assert "already failed" in late.closed
    assert fold(DISPATCHED, STARTED, ABANDONED, FAILED, late).status is JOB_STATUSES.FAILED


def test_a_failure_of_an_attempt_followed_by_another_is_a_late_report() -> None:
    again = job_events.JobStarted(dispatch=1, attempt=2, lease_until=1e9)
    state = fold(DISPATCHED, STARTED, ABANDONED.model_copy(update={"will_retry": True}), again)
    events = decision.decide_failure(state, 1, 1, RuntimeError("boom"), None, 1.0, retryable=True)
    (late,) = events
    assert isinstance(late, job_events.JobOutcomeLate)
    assert (late.reported, late.error_type, late.error_message) == (
        "failed",
        "RuntimeError",
        "boom",
    )
    assert "attempt 2 followed" in late.closed
    assert fold(DISPATCHED, STARTED, again, late).status is JOB_STATUSES.PROCESSING


def test_an_outcome_of_a_superseded_dispatch_is_a_late_report() -> None:
    replay = DISPATCHED.model_copy(update={"dispatch": 2, "source": "replay"})
    state = fold(DISPATCHED, STARTED, ABANDONED, FAILED, replay)
    (late,) = decision.decide_success(state, 1, 1, 0.1, None)
    assert isinstance(late, job_events.JobOutcomeLate)
    assert "superseded by dispatch 2" in late.closed


def test_the_history_shows_a_late_report() -> None:
    late = job_events.JobOutcomeLate(
        dispatch=1,
        attempt=1,
        reported="completed",
        closed="the job was already failed",
        duration_seconds=2.0,
    )
    described = history.describe(late, lambda v: v)
    assert (described.kind, described.label, described.step) == (
        "outcome-late",
        "late outcome",
        "1/1",
    )
    assert "completed after 2.00 s" in described.details
    assert "already failed" in described.details
