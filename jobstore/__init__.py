"""jobstore: the event log, its database, settings and errors (jobtrail's foundation)."""

from jobstore import (
    address,
    change,
    checkpoint,
    election,
    envelope,
    erasure,
    follower,
    job_events,
    job_state,
    keyring,
    payloads,
    protect,
    redaction,
    registry,
    role,
    schedule_events,
)
from jobstore.address import AddressPolicy
from jobstore.cursor import START, Cursor, Page
from jobstore.database import Database, connect, create_pool, open_database, resolve_dsn
from jobstore.dispatcher import Dispatcher, Enqueued, JobRequest
from jobstore.election import Election, LeadershipLost, LeadershipUnavailable, Lease
from jobstore.embedded import EmbeddedPostgres
from jobstore.errors import (
    AppendOnlyError,
    ConcurrencyError,
    DatabaseUnavailableError,
    EmbeddedDatabaseError,
    EventStoreError,
    InvalidEventError,
    JobError,
    JobstoreError,
    JobValidationError,
    MigrationError,
    NonRetryableJobError,
    RetryLater,
    TokenUsedError,
    UnknownEventTypeError,
)
from jobstore.event import Event, RecordedEvent, upcaster
from jobstore.follower import Follower, FollowerConfig, FollowerStopped
from jobstore.job import BaseJob, BaseJobMetadata, EnqueueJobOptions
from jobstore.job_events import JobEvent
from jobstore.job_state import JobExecution, JobState
from jobstore.migrations import MigrationState, migrate, status
from jobstore.notifier import Notifier, NotifierConfig
from jobstore.options import Backoff, DispatchOptions
from jobstore.protect import Personal
from jobstore.registry import (
    JOB_STATUSES,
    JOB_TYPES,
    JobConfig,
    JobRegistry,
    JobTypeSpec,
    default_registry,
    get_job_config,
    shared_registry,
)
from jobstore.relay import QStashLimits, Relay, RelayConfig, RelayCrash
from jobstore.retry import RetryPolicy
from jobstore.schedule import validate_cron
from jobstore.settings import Settings
from jobstore.store import (
    ANY,
    NO_STREAM,
    DeliveryToken,
    EventStore,
    ExpectedVersion,
    ReaderLag,
    StreamAppend,
)
from jobstore.subscription import Subscription

__all__ = [
    "ANY",
    "JOB_STATUSES",
    "JOB_TYPES",
    "NO_STREAM",
    "START",
    "AddressPolicy",
    "AppendOnlyError",
    "Backoff",
    "BaseJob",
    "BaseJobMetadata",
    "ConcurrencyError",
    "Cursor",
    "Database",
    "DatabaseUnavailableError",
    "DeliveryToken",
    "DispatchOptions",
    "Dispatcher",
    "Election",
    "EmbeddedDatabaseError",
    "EmbeddedPostgres",
    "EnqueueJobOptions",
    "Enqueued",
    "Event",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "Follower",
    "FollowerConfig",
    "FollowerStopped",
    "InvalidEventError",
    "JobConfig",
    "JobError",
    "JobEvent",
    "JobExecution",
    "JobRegistry",
    "JobRequest",
    "JobState",
    "JobTypeSpec",
    "JobValidationError",
    "JobstoreError",
    "LeadershipLost",
    "LeadershipUnavailable",
    "Lease",
    "MigrationError",
    "MigrationState",
    "NonRetryableJobError",
    "Notifier",
    "NotifierConfig",
    "Page",
    "Personal",
    "QStashLimits",
    "ReaderLag",
    "RecordedEvent",
    "Relay",
    "RelayConfig",
    "RelayCrash",
    "RetryLater",
    "RetryPolicy",
    "Settings",
    "StreamAppend",
    "Subscription",
    "TokenUsedError",
    "UnknownEventTypeError",
    "address",
    "change",
    "checkpoint",
    "connect",
    "create_pool",
    "default_registry",
    "election",
    "envelope",
    "erasure",
    "follower",
    "get_job_config",
    "job_events",
    "job_state",
    "keyring",
    "migrate",
    "open_database",
    "payloads",
    "protect",
    "redaction",
    "registry",
    "resolve_dsn",
    "role",
    "schedule_events",
    "shared_registry",
    "status",
    "upcaster",
    "validate_cron",
]
