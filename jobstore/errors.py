"""jobstore's errors: callers never see a driver exception, only these."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg


class JobstoreError(Exception):
    """Something went wrong in jobtrail's storage layer."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class EventStoreError(JobstoreError):
    """The event store could not carry out the request."""


class InvalidEventError(EventStoreError):
    """An event (or its stream id) cannot be stored as given; nothing was written."""


class UnknownEventTypeError(EventStoreError):
    """An event read back from the log has a type this program does not know."""

    def __init__(self, event_type: str, known: list[str]) -> None:
        super().__init__(
            f"unknown event type {event_type!r} in the log; known types: {', '.join(known)}"
        )
        self.event_type = event_type


class ConcurrencyError(EventStoreError):
    """A stream was not at the version the writer expected; nothing was written."""

    def __init__(self, stream_id: str, expected: Any, actual: int | None) -> None:
        actual_text = "unknown" if actual is None else str(actual)
        super().__init__(
            f"stream {stream_id!r} is at version {actual_text}, but the append expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class TokenUsedError(EventStoreError):
    """A one-time delivery token was used before; nothing was written."""

    def __init__(self, stream_id: str, token_id: str) -> None:
        super().__init__(
            f"delivery token {token_id!r} already started an attempt of stream {stream_id!r}"
        )
        self.stream_id = stream_id
        self.token_id = token_id


class AppendOnlyError(EventStoreError):
    """Recorded events cannot be changed or deleted; append a new event instead."""


class DatabaseUnavailableError(JobstoreError):
    """PostgreSQL cannot be reached; check DATABASE_URL and that the server is running."""


DRIVER_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable: the server is down or restarting
    asyncio.TimeoutError,
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing"
    asyncpg.InternalClientError,  # "cannot switch to state …; another operation is in progress"
    asyncpg.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError among them
    asyncpg.OperatorInterventionError,  # 57xxx: admin/crash shutdown, cannot connect now
    asyncpg.InsufficientResourcesError,  # 53xxx: too many connections, out of memory
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.ReadOnlySQLTransactionError,  # a failover's former primary, for a moment
)
"""Driver failures that say nothing about the work (see :func:`is_transient`)."""


def is_transient(exc: BaseException) -> bool:
    """Whether a database failure says nothing about the work: the same work may succeed later.

    The one classification of driver errors (lost or refused connections, a server
    restarting, asyncpg's protocol-state errors after a connection broke mid-operation,
    deadlocks): callers wait and try again, or answer 503; anything else is a real error.
    """
    return isinstance(exc, (DatabaseUnavailableError, *DRIVER_TRANSIENT))


def unavailable(exc: BaseException, what: str) -> DatabaseUnavailableError:
    """``exc`` (a transient failure) as the DatabaseUnavailableError callers handle."""
    if isinstance(exc, DatabaseUnavailableError):
        return exc
    return DatabaseUnavailableError(f"{what}: {type(exc).__name__}: {exc}"[:500])


class MisconfiguredError(JobstoreError):
    """The settings do not fit what the database holds; the message says what to set (a
    background task that stops on it is logged without a traceback)."""


class MigrationError(JobstoreError):
    """The database schema could not be brought up to date."""


class EmbeddedDatabaseError(JobstoreError):
    """The embedded PostgreSQL server could not be started or stopped."""


class JobError(JobstoreError):
    """A job operation failed; ``code`` says which rule was broken."""

    def __init__(self, message: str, code: str = "JOB_ERROR", job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.job_id = job_id


class JobValidationError(JobError):
    """A job's payload, metadata or options failed validation; nothing was written."""

    def __init__(
        self, message: str, validation_errors: list[str], job_id: str | None = None
    ) -> None:
        details = "; ".join(validation_errors)
        super().__init__(
            f"{message}: {details}" if details else message, "VALIDATION_ERROR", job_id
        )
        self.validation_errors = validation_errors


class NonRetryableJobError(JobError):
    """A handler's failure that retrying cannot fix: the job fails now, with no retries."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message, "NON_RETRYABLE", job_id)


class RetryLater(JobError):
    """A handler asks for its next attempt no sooner than ``seconds`` from now."""

    def __init__(self, seconds: float, message: str | None = None) -> None:
        if not 0 <= seconds <= 7 * 86400:
            raise ValueError(f"RetryLater takes 0 to 604800 seconds, not {seconds!r}")
        super().__init__(message or f"asked to retry in {seconds:g} s", "RETRY_LATER")
        self.seconds = seconds


def describe_validation_errors(exc: Any) -> list[str]:
    """Turn a pydantic ValidationError into one sentence per field, for people."""
    lines: list[str] = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())) or "value"
        lines.append(f"{where}: {error.get('msg', 'is invalid')}")
    return lines
