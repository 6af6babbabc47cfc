"""The events of a job's life (stream ``job-<uuid>``) and of schedules (``schedule-<id>``).

A job has dispatches 1, 2, … and each dispatch has attempts 1, 2, …; see DESIGN.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, TypeGuard, get_args

from pydantic import Field

from jobstore.event import Event, upcaster
from jobstore.options import DispatchOptions

DispatchSource = Literal["api", "schedule", "replay", "recovery"]


class JobDispatched(Event, type_name="job.dispatched"):
    """A dispatch of a job was requested: the first one, a replay or a recovery."""

    job_id: str
    dispatch: int = Field(ge=1)
    job_type: str
    payload: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)
    options: DispatchOptions = Field(default_factory=DispatchOptions)
    source: DispatchSource = "api"
    reason: str | None = None


class JobStarted(Event, type_name="job.started"):
    """An attempt of the current dispatch started running its handler."""

    dispatch: int = Field(ge=1)
    attempt: int = Field(ge=1)
    message_id: str | None = None
    lease_until: float


class JobCompleted(Event, type_name="job.completed", version=2):
    """An attempt finished successfully; the job is done."""

    dispatch: int = Field(ge=1)
    attempt: int = Field(ge=1)
    duration_seconds: float = Field(ge=0)
    result: Any = None


@upcaster("job.completed", from_version=1)
def _completed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 stored the seed's milliseconds as ``duration_ms``; version 2 uses seconds."""
    upgraded = {k: v for k, v in data.items() if k != "duration_ms"}
    upgraded["duration_seconds"] = data.get("duration_ms", 0) / 1000
    return upgraded


class JobAttemptFailed(Event, type_name="job.attempt_failed"):
    """An attempt failed (an exception, a timeout, or abandoned past its lease)."""

    dispatch: int = Field(ge=1)
    attempt: int = Field(ge=1)
    error_type: str
    error_message: str
    traceback: str | None = None
    will_retry: bool
    abandoned: bool = False
    duration_seconds: float | None = None
    retry_after_seconds: float | None = None
    """The delay the host asked of QStash before the next attempt (backoff, RetryLater)."""


class JobFailed(Event, type_name="job.failed"):
    """The current dispatch ended in failure; no further attempt will run."""

    dispatch: int = Field(ge=1)
    attempt: int | None = None
    reason: str
    error_type: str | None = None
    error_message: str | None = None


class JobCancelled(Event, type_name="job.cancelled"):
    """Cancellation was requested; future attempts stop, a running one still finishes."""

    dispatch: int = Field(ge=1)
    reason: str | None = None


class JobNotified(Event, type_name="job.notified"):
    """The host called the job's ``callback``/``failure_callback`` about an outcome.

    ``result`` is ``delivered`` (2xx), ``rejected`` (a final answer: 3xx, most 4xx),
    ``error`` (an answer QStash retries), ``unreachable`` or ``refused`` (the address
    policy); ``url`` is shown without its query string or credentials.
    """

    dispatch: int = Field(ge=1)
    kind: Literal["completed", "failed"]
    notification_id: str
    url: str
    result: str
    status: int | None = None


class JobHeartbeat(Event, type_name="job.heartbeat"):
    """A running attempt said it is alive: its lease now ends at ``lease_until``.

    Recorded at most once per half lease (heartbeats in between change nothing); the
    sweeper, QStash's verdict and other hosts wait for the extended lease.
    """

    dispatch: int = Field(ge=1)
    attempt: int = Field(ge=1)
    lease_until: float


class JobOutcomeLate(Event, type_name="job.outcome_late"):
    """A handler reported an outcome after its attempt was closed: recorded abandoned (the
    sweeper, a newer delivery, QStash's verdict), superseded by a newer dispatch, or after
    the job finished.  History only: the job's status stays as the first outcome left it.

    ``reported`` is what the handler said (``completed`` or ``failed``), ``closed`` why
    it no longer counted.
    """

    dispatch: int = Field(ge=1)
    attempt: int = Field(ge=1)
    reported: Literal["completed", "failed"]
    closed: str
    duration_seconds: float | None = None
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None


JobEvent: TypeAlias = (
    JobDispatched
    | JobStarted
    | JobCompleted
    | JobAttemptFailed
    | JobFailed
    | JobCancelled
    | JobNotified
    | JobOutcomeLate
    | JobHeartbeat
)
"""Every event of a job stream: a closed union, so that a ``match`` over a job's events
ending in ``assert_never`` is checked by mypy to handle each one (add a new job event here)."""

JOB_EVENT_TYPES: Final[frozenset[type[Event]]] = frozenset(get_args(JobEvent))


def is_job_event(event: Event) -> TypeGuard[JobEvent]:
    """Whether ``event`` is one of a job stream's events (exact types: it is called a lot)."""
    return type(event) in JOB_EVENT_TYPES


class StreamsArchived(Event, type_name="log.streams_archived"):
    """Whole streams of finished jobs were moved to the archive (retention).

    Recorded in stream ``archive-<uuid>`` by the one sanctioned archiving function; the
    views drop these jobs, incrementally and on a rebuild alike.
    """

    stream_ids: list[str]
    job_ids: list[str]
    finished_before: datetime
    retention_days: int = Field(ge=0)


class ArchivePurged(Event, type_name="log.archive_purged"):
    """Archived events were deleted for good, after being exported (retention's purge).

    Recorded by ``jobtrail.purge_archive`` in the transaction that deleted them, only once
    ``file`` (gzip-compressed JSON Lines, one archived event a line) was written, fsynced
    and read back with the same ``sha256`` (of the file's bytes).
    """

    streams: int = Field(ge=1)
    events: int = Field(ge=1)
    first_position: int
    last_position: int
    sha256: str
    file: str
    file_bytes: int = Field(ge=1)
    archived_before: datetime
    archive_days: int = Field(ge=0)


class ExportFilesRemoved(Event, type_name="log.export_files_removed"):
    """Files written by export-data or generate-report were removed past their window."""

    kind: Literal["export-data", "generate-report"]
    files: list[str]
    bytes: int = Field(ge=0)
    older_than: datetime
    keep_days: int = Field(ge=1)
