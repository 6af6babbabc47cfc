"""A ``job_executions`` row as a job's state: the one mapping between the view's columns
and ``jobstore.JobState``.

The view holds each job's whole folded state, field for field (plus ``max_retries``, the
options' retry budget, as a column to read), and folds the next events into it with
jobstore's own ``apply``: the rules of a job live only in ``jobstore.job_state``.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from jobstore import JOB_STATUSES, DispatchOptions, JobState, job_events, job_state

_options_json = DispatchOptions.__pydantic_serializer__.to_json

COLUMNS: Final = (
    *("job_id", "job_type", "status", "payload", "metadata", "user_id", "organization_id"),
    *("dispatch", "source", "created_at", "version", "position", "attempt", "attempts"),
    *("lease_until", "ever_completed", "cancel_requested", "started_at", "completed_at"),
    *("failed_at", "cancelled_at", "duration_seconds", "last_error", "result", "message_id"),
    *("replay_count", "schedule_id", "options", "max_retries"),
)
"""The view's columns, in the order of ``record``'s values: a ``JobState`` field each, and
``max_retries`` (the options' retry budget, a column to read)."""


def record(s: JobState) -> tuple[Any, ...]:
    """The view's row of a state: its values in ``COLUMNS`` order.

    Spelled out, not ``operator.attrgetter``: a rebuild writes a row per job and batch, and
    this is three times as fast.  Options go as encoded JSON (the jsonb codec and
    ``writer`` pass bytes through) without their None values: every option that can be
    None is None by default, and fewer bytes are less for PostgreSQL to store.
    """
    return (
        *(s.job_id, s.job_type, s.status, s.payload, s.metadata, s.user_id, s.organization_id),
        *(s.dispatch, s.source, s.created_at, s.version, s.position, s.attempt, s.attempts),
        *(s.lease_until, s.ever_completed, s.cancel_requested, s.started_at, s.completed_at),
        *(s.failed_at, s.cancelled_at, s.duration_seconds, s.last_error, s.result, s.message_id),
        *(s.replay_count, s.schedule_id, _options_json(s.options, exclude_none=True)),
        s.options.retries,
    )


class Row(Protocol):
    """A row read from the view (an asyncpg record, or a dict)."""

    def __getitem__(self, column: str, /) -> Any: ...


def state_of(row: Row) -> JobState:
    """The state a view row holds (a row with every column of ``COLUMNS``)."""
    return JobState(
        job_id=row["job_id"],
        job_type=row["job_type"],
        status=JOB_STATUSES(row["status"]),
        payload=row["payload"],
        metadata=row["metadata"],
        user_id=row["user_id"],
        organization_id=row["organization_id"],
        options=DispatchOptions.model_validate(row["options"]),
        dispatch=row["dispatch"],
        source=row["source"],
        created_at=row["created_at"],
        version=row["version"],
        position=row["position"],
        attempt=row["attempt"],
        attempts=row["attempts"],
        lease_until=row["lease_until"],
        ever_completed=row["ever_completed"],
        cancel_requested=row["cancel_requested"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        failed_at=row["failed_at"],
        cancelled_at=row["cancelled_at"],
        duration_seconds=row["duration_seconds"],
        last_error=row["last_error"],
        result=row["result"],
        message_id=row["message_id"],
        replay_count=row["replay_count"],
        schedule_id=row["schedule_id"],
    )


def archived_job_ids(event: job_events.StreamsArchived) -> set[str]:
    """The jobs an archiving event removed (named as job ids or as job streams)."""
    from_streams = (job_state.job_id_of(s) for s in event.stream_ids)
    return set(event.job_ids) | {job_id for job_id in from_streams if job_id is not None}
