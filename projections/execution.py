"""A ``job_executions`` row as a job's state: the one mapping between the view's columns
and ``jobstore.JobState``.

The view holds each job's whole folded state, field for field (plus ``max_retries``, the
options' retry budget, as a column to read), and folds the next events into it with
jobstore's own ``apply``: the rules of a job live only in ``jobstore.job_state``.
"""

from __future__ import annotations

import dataclasses
from operator import attrgetter
from typing import Any, Final, Protocol

import orjson

from jobstore import JOB_STATUSES, DispatchOptions, JobExecution, JobState, job_events, job_state

_FIELDS: Final = tuple(f.name for f in dataclasses.fields(JobState) if f.name != "options")
_values = attrgetter(*_FIELDS)
_options_json = DispatchOptions.__pydantic_serializer__.to_json

COLUMNS: Final[tuple[str, ...]] = (*_FIELDS, "options", "max_retries")
"""The view's columns, in the order of ``record``'s values."""


def record(state: JobState) -> tuple[Any, ...]:
    """The view's row of ``state``: its values in ``COLUMNS`` order (options as JSON)."""
    options = state.options
    return (*_values(state), orjson.Fragment(_options_json(options)), options.retries)


class Row(Protocol):
    """A row read from the view (an asyncpg record, or a dict)."""

    def __getitem__(self, column: str, /) -> Any: ...


def state_of(row: Row) -> JobState:
    """The state a view row holds (a row with every column of ``COLUMNS``)."""
    values = {name: row[name] for name in _FIELDS}
    values["status"] = JOB_STATUSES(values["status"])
    return JobState(**values, options=DispatchOptions.model_validate(row["options"]))


def archived_job_ids(event: job_events.StreamsArchived) -> set[str]:
    """The jobs an archiving event removed (named as job ids or as job streams)."""
    from_streams = (job_state.job_id_of(s) for s in event.stream_ids)
    return set(event.job_ids) | {job_id for job_id in from_streams if job_id is not None}


_READ_COLUMNS: Final = (
    "job_id",
    "job_type",
    "status",
    "payload",
    "metadata",
    "user_id",
    "organization_id",
    "dispatch",
    "attempt",
    "attempts",
    "max_retries",
    "cancel_requested",
    "ever_completed",
    "last_error",
    "result",
    "created_at",
    "started_at",
    "completed_at",
    "failed_at",
    "cancelled_at",
    "duration_seconds",
    "message_id",
    "schedule_id",
    "replay_count",
    "source",
    "version",
    "position",
)


class ExecutionRow:
    """Deprecated: a row of the 27 columns ``reader.sql`` selects, for ``reader.py`` until
    it selects ``COLUMNS`` and calls ``state_of`` (the only options it has are retries)."""

    __slots__ = ("state",)

    def __init__(self, *values: Any) -> None:
        row = dict(zip(_READ_COLUMNS, values, strict=True))
        legacy = {"options": {"retries": row["max_retries"]}, "lease_until": None}
        self.state = state_of(row | legacy)

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.state.job_id

    @property
    def created_at(self) -> Any:
        """When the job was first dispatched."""
        return self.state.created_at

    def to_execution(self) -> JobExecution:
        """The seed's JobExecution record of this row."""
        return JobExecution.from_state(self.state)
