"""jobstore's errors: callers never see a driver exception, only these."""

from __future__ import annotations

from typing import Any


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


class AppendOnlyError(EventStoreError):
    """Recorded events cannot be changed or deleted; append a new event instead."""


class DatabaseUnavailableError(JobstoreError):
    """PostgreSQL cannot be reached; check DATABASE_URL and that the server is running."""


class MigrationError(JobstoreError):
    """The database schema could not be brought up to date."""


class EmbeddedDatabaseError(JobstoreError):
    """The embedded PostgreSQL server could not be started or stopped."""
