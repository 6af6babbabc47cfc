"""The views' pure folds: the job_executions row agrees with the dispatcher's fold for any
event sequence, and attempts end the way their events say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobstore
from jobstore import job_events, job_state
from projections import attempt, errors, execution

JOB_ID = "9b2f6c1e-4b7a-4e57-8d1a-0c6a1f2b3c4d"
START = datetime(2026, 1, 1, tzinfo=UTC)
SMALL = st.integers(1, 3)
TEXT = st.text(alphabet="ab %_", max_size=6)

FIRST = st.builds(
    job_events.JobDispatched,
    job_id=st.just(JOB_ID),
    dispatch=SMALL,
    job_type=st.sampled_from(["send-email", "export-data"]),
    payload=st.dictionaries(st.sampled_from("ab"), st.integers(0, 9), max_size=2),
    metadata=st.fixed_dictionaries(
        {}, optional={"user_id": st.integers(1, 9), "schedule_id": st.just("sch_1")}
    ),
    options=st.fixed_dictionaries({"retries": st.integers(0, 5)}),
    source=st.sampled_from(["api", "schedule", "replay", "recovery"]),
)
LATER = st.one_of(
    FIRST,
    st.builds(job_events.JobStarted, dispatch=SMALL, attempt=SMALL, lease_until=st.just(1e9)),
    st.builds(
        job_events.JobCompleted,
        dispatch=SMALL,
        attempt=SMALL,
        duration_seconds=st.floats(0, 100),
        result=st.none() | st.integers(0, 3),
    ),
    st.builds(
        job_events.JobAttemptFailed,
        dispatch=SMALL,
        attempt=SMALL,
        error_type=st.just("ValueError"),
        error_message=TEXT,
        will_retry=st.booleans(),
        abandoned=st.booleans(),
    ),
    st.builds(
        job_events.JobFailed,
        dispatch=SMALL,
        attempt=st.none() | SMALL,
        reason=TEXT,
        error_type=st.none() | st.just("X"),
        error_message=st.none() | TEXT,
    ),
    st.builds(job_events.JobCancelled, dispatch=SMALL),
)


def recorded(events: list[jobstore.Event]) -> list[jobstore.RecordedEvent]:
    return [
        jobstore.RecordedEvent(
            position=10 + i,
            stream_id=f"job-{JOB_ID}",
            version=i + 1,
            event=event,
            metadata={},
            recorded_at=START + timedelta(seconds=i),
        )
        for i, event in enumerate(events)
    ]


@settings(max_examples=300)
@given(first=FIRST, later=st.lists(LATER, max_size=12))
def test_the_view_row_agrees_with_the_dispatchers_fold(
    first: job_events.JobDispatched, later: list[jobstore.Event]
) -> None:
    events = recorded([first, *later])
    row = None
    for event in events:
        row = execution.evolve(row, event)
    state = job_state.fold(events)
    assert row is not None and state is not None
    assert row.to_execution() == jobstore.JobExecution.from_state(state)
    assert (row.version, row.position) == (len(events), events[-1].position)


def test_a_job_stream_must_start_with_a_dispatch() -> None:
    (first,) = recorded([job_events.JobStarted(dispatch=1, attempt=1, lease_until=1.0)])
    with pytest.raises(errors.ProjectionError, match=r"starts with job\.started"):
        execution.evolve(None, first)


def attempts_after(*events: jobstore.Event) -> dict[Any, attempt.AttemptRow]:
    rows: dict[Any, attempt.AttemptRow] = {}
    for event in recorded(list(events)):
        attempt.evolve(JOB_ID, rows, event)
    return rows


def test_attempts_record_how_each_one_ended() -> None:
    rows = attempts_after(
        job_events.JobStarted(dispatch=1, attempt=1, message_id="m", lease_until=5.0),
        job_events.JobAttemptFailed(
            dispatch=1,
            attempt=1,
            error_type="TimeoutError",
            error_message="late",
            will_retry=True,
            abandoned=True,
        ),
        job_events.JobStarted(dispatch=1, attempt=2, lease_until=6.0),
        job_events.JobCompleted(dispatch=1, attempt=2, duration_seconds=1.5),
        job_events.JobStarted(dispatch=2, attempt=1, lease_until=7.0),
        job_events.JobFailed(dispatch=2, attempt=1, reason="qstash gave up"),
    )
    assert [(k, r.outcome) for k, r in sorted(rows.items())] == [
        ((1, 1), "abandoned"),
        ((1, 2), "completed"),
        ((2, 1), "failed"),
    ]
    assert rows[(1, 1)].abandoned and rows[(1, 1)].error_type == "TimeoutError"
    assert rows[(1, 2)].duration_seconds == 1.5
    assert rows[(2, 1)].error_message == "qstash gave up"
    assert rows[(1, 1)].started_at == START and rows[(1, 1)].finished_at is not None


def test_a_final_failure_leaves_an_attempt_that_already_ended_alone() -> None:
    rows = attempts_after(
        job_events.JobStarted(dispatch=1, attempt=1, lease_until=5.0),
        job_events.JobCompleted(dispatch=1, attempt=1, duration_seconds=0.1),
        job_events.JobFailed(dispatch=1, attempt=1, reason="late verdict"),
    )
    assert rows[(1, 1)].outcome == "completed"
