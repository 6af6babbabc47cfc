"""Prometheus metrics of one host (its own registry, so several apps can share a process)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from jobstore import QStashLimits
from jobstore.audit import AuditLag


@dataclass
class Metrics:
    """Deliveries by type and outcome, handler durations, relay backlog, projection lag.

    And the log readers' lag: events committed behind a running transaction, which no
    follower may read until it ends (see ``jobstore.store``).
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.deliveries = Counter(
            "jobtrail_deliveries",
            "Deliveries received, by job type and outcome",
            ["job_type", "outcome"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "jobtrail_handler_duration_seconds",
            "Handler run time, by job type",
            ["job_type"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.relay_backlog = Gauge(
            "jobtrail_relay_backlog_events",
            "Events in the log the relay has not handled",
            registry=self.registry,
        )
        self.pending = Gauge(
            "jobtrail_jobs_pending",
            "Pending jobs, by job type",
            ["job_type"],
            registry=self.registry,
        )
        self.waiting_on_limit = Gauge(
            "jobtrail_jobs_waiting_on_limit",
            "Pending jobs under a rate or concurrency limit, by job type",
            ["job_type"],
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "jobtrail_oldest_pending_seconds",
            "Age of the oldest pending job, by job type",
            ["job_type"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "jobtrail_notifications",
            "Job callbacks called for notifications, by outcome kind and result",
            ["kind", "result"],
            registry=self.registry,
        )
        self.projection_lag = Gauge(
            "jobtrail_projection_lag_events",
            "Events a projection has not applied yet",
            ["projection"],
            registry=self.registry,
        )
        self.task_up = Gauge(
            "jobtrail_background_task_up",
            "1 while a background task of this host runs, 0 while it waits to restart",
            ["task"],
            registry=self.registry,
        )
        self.task_restarts = Counter(
            "jobtrail_background_task_restarts",
            "Times a background task of this host failed and was restarted",
            ["task"],
            registry=self.registry,
        )
        self.qstash_throttled = Counter(
            "jobtrail_qstash_throttled",
            "QStash answers 429 (its rate limit or quota) to this host's relay, retried later",
            registry=self.registry,
        )
        self.qstash_retried = Counter(
            "jobtrail_qstash_call_retries",
            "QStash calls of this host's relay retried after a network error or a 5xx",
            registry=self.registry,
        )
        self.qstash_waiting = Gauge(
            "jobtrail_qstash_wait_seconds",
            "Seconds until the relay tries a throttled or failed QStash call again (0: none)",
            registry=self.registry,
        )
        self._qstash_seen = QStashLimits()
        self.database_waits = Counter(
            "jobtrail_database_outage_waits",
            "Times a request or task of this host waited for the database to come back "
            "(JOBTRAIL_DATABASE_RIDE_OUT_SECONDS) instead of failing at once",
            registry=self.registry,
        )
        self._database_waits_seen = 0
        self.reader_held_back_events = Gauge(
            "jobtrail_log_reader_held_back_events",
            "Committed events no follower may read yet: an older transaction is still running",
            registry=self.registry,
        )
        self.reader_held_back_seconds = Gauge(
            "jobtrail_log_reader_held_back_seconds",
            "Seconds since the oldest event followers are held back from was written",
            registry=self.registry,
        )

        self.audit_unchained = Gauge(
            "jobtrail_audit_unchained_events",
            "Events appended since the hash chain was last brought up to date",
            registry=self.registry,
        )
        self.audit_unanchored = Gauge(
            "jobtrail_audit_unanchored_events",
            "Events no signed audit anchor covers yet (not protected against edits yet)",
            registry=self.registry,
        )
        self.audit_oldest_unanchored = Gauge(
            "jobtrail_audit_oldest_unanchored_seconds",
            "How long the oldest event no signed audit anchor covers has waited (0: none)",
            registry=self.registry,
        )
        self.audit_last_anchor = Gauge(
            "jobtrail_audit_last_anchor_timestamp_seconds",
            "When the last audit anchor was made (Unix time; 0: none yet)",
            registry=self.registry,
        )

    def observe_audit(self, lag: AuditLag) -> None:
        """Show how far the hash chain and the audit anchors are behind the log."""
        self.audit_unchained.set(lag.unchained)
        self.audit_unanchored.set(lag.unanchored)
        at = lag.last_anchor_at
        self.audit_last_anchor.set(0 if at is None else at.timestamp())
        self.audit_oldest_unanchored.set(lag.waited(datetime.now(UTC)).total_seconds())

    def observe_qstash(self, limits: QStashLimits) -> None:
        """Bring the QStash counters and wait up to ``limits`` (the relay keeps the counts)."""
        seen = self._qstash_seen
        self.qstash_throttled.inc(max(0, limits.throttled - seen.throttled))
        self.qstash_retried.inc(max(0, limits.unreachable - seen.unreachable))
        seen.throttled, seen.unreachable = limits.throttled, limits.unreachable
        waiting = limits.waiting_until
        self.qstash_waiting.set(0 if waiting is None else max(0.0, waiting - time.time()))

    def observe_database_waits(self, waits: int) -> None:
        """Bring the outage-wait counter up to ``waits`` (the event store keeps the count)."""
        self.database_waits.inc(max(0, waits - self._database_waits_seen))
        self._database_waits_seen = max(waits, self._database_waits_seen)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return bytes(generate_latest(self.registry))
