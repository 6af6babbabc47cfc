"""The one job fold (jobstore.job_state) as the host and the views use it, the view row that
holds its state, and the attempts view's fold."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobstore
from jobstore import JOB_STATUSES, errors, job_events, job_state
from projections import attempt, execution

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
        {},
        optional={
            "user_id": st.integers(1, 9),
            "organization_id": st.integers(1, 9),
            "schedule_id": st.just("sch_1"),
        },
    ),
    options=st.fixed_dictionaries(
        {"retries": st.integers(0, 5)},
        optional={"timeout": st.sampled_from([1.5, 60.0]), "callback": st.just("https://x/cb")},
    ),
    source=st.sampled_from(["api", "schedule", "replay", "recovery"]),
)
LATER = st.one_of(
    FIRST,
    st.builds(
        job_events.JobStarted,
        dispatch=SMALL,
        attempt=SMALL,
        message_id=st.none() | st.just("m"),
        lease_until=st.floats(1e9, 2e9),
    ),
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
    st.builds(
        job_events.JobNotified,
        dispatch=SMALL,
        kind=st.sampled_from(["completed", "failed"]),
        notification_id=st.just("n"),
        url=st.just("https://hooks.example/x"),
        result=st.sampled_from(["delivered", "error"]),
    ),
    st.builds(
        job_events.JobOutcomeLate,
        dispatch=SMALL,
        attempt=SMALL,
        reported=st.sampled_from(["completed", "failed"]),
        closed=TEXT,
    ),
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


def folded(*events: jobstore.Event) -> jobstore.JobState:
    state = job_state.fold(recorded(list(events)))
    assert state is not None
    return state


def first(**fields: Any) -> job_events.JobDispatched:
    values: dict[str, Any] = {
        "job_id": JOB_ID,
        "dispatch": 1,
        "job_type": "send-email",
        "payload": {"to": "a@example.com"},
        "metadata": {"user_id": 7},
        "options": {"retries": 2, "timeout": 10},
    }
    return job_events.JobDispatched(**(values | fields))


def started(dispatch: int = 1, attempt: int = 1) -> job_events.JobStarted:
    return job_events.JobStarted(dispatch=dispatch, attempt=attempt, lease_until=1e9 + attempt)


def attempt_failed(attempt: int = 1, will_retry: bool = True) -> job_events.JobAttemptFailed:
    return job_events.JobAttemptFailed(
        dispatch=1, attempt=attempt, error_type="E", error_message="boom", will_retry=will_retry
    )


@settings(max_examples=300)
@given(first=FIRST, later=st.lists(LATER, max_size=12))
def test_folding_in_place_equals_the_pure_evolve_which_keeps_each_state(
    first: job_events.JobDispatched, later: list[jobstore.Event]
) -> None:
    events = recorded([first, *later])
    states: list[jobstore.JobState] = []
    state = None
    for event in events:
        before = copy.deepcopy(state)
        state = job_state.evolve(state, event)
        assert states == [] or states[-1] == before  # evolve left its input as it was
        states.append(state)
    assert job_state.fold(events) == states[-1]
    assert (states[-1].version, states[-1].position) == (len(events), events[-1].position)


@settings(max_examples=300)
@given(first=FIRST, later=st.lists(LATER, max_size=12))
def test_the_view_row_holds_the_whole_state(
    first: job_events.JobDispatched, later: list[jobstore.Event]
) -> None:
    state = job_state.fold(recorded([first, *later]))
    assert state is not None
    values = dict(zip(execution.COLUMNS, execution.record(state), strict=True))
    for column, value in values.items():
        if column not in ("options", "max_retries"):
            assert value == getattr(state, column), column
    row = orjson.loads(orjson.dumps(values, default=orjson.Fragment))  # as the upsert sends it
    row["created_at"] = state.created_at  # the one column JSON would not give back typed
    for moment in ("started_at", "completed_at", "failed_at", "cancelled_at"):
        row[moment] = getattr(state, moment)
    assert execution.state_of(row) == state
    assert row["max_retries"] == state.max_retries == state.options.retries


def test_a_job_goes_pending_processing_retrying_then_completed_and_leases_end() -> None:
    assert folded(first()).status is JOB_STATUSES.PENDING
    running = folded(first(), started())
    assert (running.status, running.lease_until, running.attempts) == ("processing", 1e9 + 1, 1)
    retrying = folded(first(), started(), attempt_failed())
    assert (retrying.status, retrying.lease_until) == ("retrying", None)
    assert retrying.last_error == "E: boom"
    done = folded(
        first(),
        started(),
        attempt_failed(),
        started(attempt=2),
        job_events.JobCompleted(dispatch=1, attempt=2, duration_seconds=1.5, result={"n": 1}),
    )
    assert (done.status, done.attempt, done.attempts, done.lease_until) == ("completed", 2, 2, None)
    assert (done.duration_seconds, done.result, done.ever_completed) == (1.5, {"n": 1}, True)
    assert done.started_at == START + timedelta(seconds=1)  # the first attempt's start


def test_a_cancelled_job_stays_cancelled_when_a_late_attempt_runs_but_records_a_completion() -> (
    None
):
    cancelled = folded(first(), job_events.JobCancelled(dispatch=1, reason="no"), started())
    assert cancelled.status is JOB_STATUSES.CANCELLED and cancelled.cancel_requested
    late = folded(
        first(),
        started(),
        job_events.JobCancelled(dispatch=1),
        attempt_failed(will_retry=True),
        job_events.JobCompleted(dispatch=1, attempt=1, duration_seconds=0.1),
    )
    assert late.status is JOB_STATUSES.COMPLETED and late.ever_completed


def test_a_replay_is_the_next_dispatch_with_its_own_options() -> None:
    state = folded(
        first(),
        started(),
        job_events.JobFailed(dispatch=1, attempt=1, reason="spent"),
        first(dispatch=2, source="replay", options={"retries": 5}),
    )
    assert (state.status, state.dispatch, state.attempt, state.replay_count) == ("pending", 2, 0, 1)
    assert (state.max_retries, state.failed_at, state.source) == (5, None, "replay")


def test_a_final_failure_keeps_the_last_error_unless_it_brings_its_own() -> None:
    kept = folded(
        first(), started(), attempt_failed(), job_events.JobFailed(dispatch=1, reason="r")
    )
    assert (kept.status, kept.last_error) == ("failed", "E: boom")
    own = folded(first(), job_events.JobFailed(dispatch=1, reason="r", error_message="gone"))
    assert own.last_error == "Error: gone"


def test_the_execution_record_reads_ids_that_fit_the_view() -> None:
    execution_of = jobstore.JobExecution.from_state
    fits = execution_of(folded(first(metadata={"user_id": 7, "organization_id": 3})))
    assert (fits.user_id, fits.organization_id, fits.max_retries) == (7, 3, 2)
    too_big = execution_of(folded(first(metadata={"user_id": 2**64, "schedule_id": 5})))
    assert (too_big.user_id, too_big.schedule_id) == (None, None)


def test_a_job_stream_must_start_with_a_dispatch() -> None:
    (event,) = recorded([job_events.JobStarted(dispatch=1, attempt=1, lease_until=1.0)])
    with pytest.raises(errors.EventStoreError, match=r"starts with job\.started"):
        job_state.apply(None, event)


def test_an_event_of_another_stream_kind_is_refused_in_a_job_stream() -> None:
    dispatched, archived = recorded(
        [
            first(),
            job_events.StreamsArchived(
                stream_ids=[], job_ids=[], finished_before=START, retention_days=1
            ),
        ]
    )
    with pytest.raises(errors.EventStoreError, match="does not belong to a job stream"):
        job_state.fold([dispatched, archived])


def attempts_after(*events: jobstore.Event) -> dict[Any, attempt.AttemptRow]:
    rows: dict[Any, attempt.AttemptRow] = {}
    for event in recorded(list(events)):
        attempt.apply(JOB_ID, rows, event)
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
    rows: dict[Any, attempt.AttemptRow] = {}
    events = recorded(
        [
            job_events.JobStarted(dispatch=1, attempt=1, lease_until=5.0),
            job_events.JobCompleted(dispatch=1, attempt=1, duration_seconds=0.1),
            job_events.JobFailed(dispatch=1, attempt=1, reason="late verdict"),
        ]
    )
    changed = [attempt.apply(JOB_ID, rows, event) for event in events]
    assert changed == [(1, 1), (1, 1), None]
    assert rows[(1, 1)].outcome == "completed"


def test_options_left_out_of_a_view_row_when_none_read_back_as_none() -> None:
    """The view stores options without their None values; that loses nothing only while
    every option that can be None is None by default."""
    for name, field in jobstore.DispatchOptions.model_fields.items():
        if not field.is_required() and field.default_factory is None:
            can_be_none = field.annotation is None or type(None) in getattr(
                field.annotation, "__args__", ()
            )
            assert not can_be_none or field.default is None, name
