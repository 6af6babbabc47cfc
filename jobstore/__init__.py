"""jobstore: the event log, its database, settings and errors (jobtrail's foundation)."""

from jobstore import job_events
from jobstore.database import Database, connect, create_pool, open_database, resolve_dsn
from jobstore.embedded import EmbeddedPostgres
from jobstore.errors import (
    AppendOnlyError,
    ConcurrencyError,
    DatabaseUnavailableError,
    EmbeddedDatabaseError,
    EventStoreError,
    InvalidEventError,
    JobstoreError,
    MigrationError,
    UnknownEventTypeError,
)
from jobstore.event import Event, RecordedEvent, upcaster
from jobstore.migrations import MigrationState, migrate, status
from jobstore.settings import Settings
from jobstore.store import ANY, NO_STREAM, EventStore, ExpectedVersion, StreamAppend
from jobstore.subscription import Subscription

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendOnlyError",
    "ConcurrencyError",
    "Database",
    "DatabaseUnavailableError",
    "EmbeddedDatabaseError",
    "EmbeddedPostgres",
    "Event",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "InvalidEventError",
    "JobstoreError",
    "MigrationError",
    "MigrationState",
    "RecordedEvent",
    "Settings",
    "StreamAppend",
    "Subscription",
    "UnknownEventTypeError",
    "connect",
    "create_pool",
    "job_events",
    "migrate",
    "open_database",
    "resolve_dsn",
    "status",
    "upcaster",
]
