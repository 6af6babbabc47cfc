"""The job registry: every job type's payload model, configuration and handler."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobstore import errors, payloads, protect
from jobstore.duration import Seconds
from jobstore.options import Backoff, check_flow_key


class JOB_TYPES(StrEnum):
    """The six built-in job types."""

    SEND_EMAIL = "send-email"
    PROCESS_WEBHOOK = "process-webhook"
    PROCESS_STRIPE_WEBHOOK = "process-stripe-webhook"
    EXPORT_DATA = "export-data"
    GENERATE_REPORT = "generate-report"
    CLEANUP_OLD_DATA = "cleanup-old-data"


class JOB_STATUSES(StrEnum):
    """Every status a job can have (the seed's four, plus retrying and cancelled)."""

    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobConfig(BaseModel):
    """How a job type runs: its endpoint on the host, retries, timeout and, for long jobs, a
    heartbeat interval (the lease is then two heartbeats, renewed by ``job.heartbeat()``).

    ``timeout`` is seconds (not the seed's milliseconds), a timedelta, or a QStash duration
    such as ``"5m"`` (see :mod:`jobstore.duration`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    endpoint: str = Field(pattern=r"^/[A-Za-z0-9/._-]*$")
    retries: int = Field(ge=0, le=100)
    timeout: Seconds = Field(gt=0, le=86400, description="seconds, a timedelta or e.g. '5m'")
    description: str = ""
    rate: int | None = Field(default=None, ge=1, description="jobs started per period")
    period: Seconds = Field(default=1, ge=1, le=7 * 86400, description="the rate's period")
    parallelism: int | None = Field(default=None, ge=1, description="attempts in flight")
    flow_key: str = Field(
        default="{job_type}",
        max_length=200,
        description="whom the limits are per: a template of job_type, organization_id, user_id",
    )
    backoff: Backoff | None = Field(
        default=None, description="delays between attempts (None: QStash's schedule)"
    )
    unique_for: Seconds | None = Field(
        default=None, gt=0, description="how long an idempotency key keeps its job (forever)"
    )
    max_timeout: Seconds | None = Field(
        default=None, gt=0, le=86400, description="the longest per-enqueue timeout allowed"
    )
    heartbeat: Seconds | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="seconds between the handler's job.heartbeat() calls: the attempt's "
        "lease is two of them, renewed by each heartbeat, up to the timeout",
    )

    @field_validator("flow_key")
    @classmethod
    def _flow_key_names_known_fields(cls, value: str) -> str:
        return check_flow_key(value)


@dataclass(frozen=True)
class JobTypeSpec:
    """A registered job type: its configuration, payload model and (optional) handler."""

    config: JobConfig
    payload_model: type[BaseModel]
    handler: Callable[..., Any] | None = None
    backoff: Callable[[int], float] | None = None
    """A custom delay (seconds) after failed attempt n; overrides ``config.backoff``."""


@dataclass
class JobRegistry:
    """Job types by name; applications register their own without editing jobtrail."""

    _types: dict[str, JobTypeSpec] = field(default_factory=dict)

    def register(
        self,
        config: JobConfig,
        payload_model: type[BaseModel],
        handler: Callable[..., Any] | None = None,
        *,
        replace: bool = False,
        backoff: Callable[[int], float] | None = None,
    ) -> JobTypeSpec:
        """Add (or, with ``replace``, swap) a job type; return its spec.

        ``backoff(attempt) -> seconds`` is a custom retry delay, checked here for attempts
        1 to 10 (a number from 0 to 7 days each).
        """
        if backoff is not None:
            _check_backoff(config.type, backoff)
        if config.heartbeat is not None and handler is not None and not _is_async(handler):
            raise errors.JobError(
                f"job type {config.type!r} has a heartbeat, so its handler must be async "
                "(it calls `await job.heartbeat()`); a plain function cannot heartbeat",
                code="SYNC_HEARTBEAT_HANDLER",
            )
        if config.type in self._types and not replace:
            raise errors.JobError(
                f"job type {config.type!r} is already registered; pass replace=True to swap it",
                code="DUPLICATE_JOB_TYPE",
            )
        clash = [
            s.config.type
            for s in self._types.values()
            if s.config.endpoint == config.endpoint and s.config.type != config.type
        ]
        if clash:
            raise errors.JobError(
                f"endpoint {config.endpoint!r} is already used by job type {clash[0]!r}",
                code="DUPLICATE_ENDPOINT",
            )
        spec = JobTypeSpec(config, payload_model, handler, backoff)
        protect.declare(config.type, payload_model)
        self._types[config.type] = spec
        return spec

    def set_handler(self, job_type: str, handler: Callable[..., Any]) -> None:
        """Attach or replace the handler of a registered job type."""
        spec = self.get(job_type)
        self._types[job_type] = dataclasses.replace(spec, handler=handler)

    def get(self, job_type: str) -> JobTypeSpec:
        """The spec of ``job_type``; JobError(UNKNOWN_JOB_TYPE) names the known ones."""
        try:
            return self._types[job_type]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._types)) or "none"
            raise errors.JobError(
                f"unknown job type {job_type!r}; known types: {known}", code="UNKNOWN_JOB_TYPE"
            ) from None

    def types(self) -> list[str]:
        """Every registered job type, sorted."""
        return sorted(self._types)

    def by_endpoint(self, endpoint: str) -> JobTypeSpec | None:
        """The job type served at ``endpoint``, if any."""
        return next((s for s in self._types.values() if s.config.endpoint == endpoint), None)

    def copy(self) -> JobRegistry:
        """An independent registry with the same job types (for tests and embedding)."""
        return JobRegistry(dict(self._types))


_BUILT_IN: list[tuple[JOB_TYPES, type[BaseModel], int, float, str]] = [
    (JOB_TYPES.SEND_EMAIL, payloads.SendEmailPayload, 3, 30, "Render and send an email"),
    (JOB_TYPES.PROCESS_WEBHOOK, payloads.ProcessWebhookPayload, 5, 30, "Deliver a signed webhook"),
    (
        JOB_TYPES.PROCESS_STRIPE_WEBHOOK,
        payloads.ProcessStripeWebhookPayload,
        3,
        60,
        "Verify and route a Stripe event",
    ),
    (JOB_TYPES.EXPORT_DATA, payloads.ExportDataPayload, 2, 300, "Export job history as JSON Lines"),
    (
        JOB_TYPES.GENERATE_REPORT,
        payloads.GenerateReportPayload,
        2,
        300,
        "Job statistics for a period",
    ),
    (
        JOB_TYPES.CLEANUP_OLD_DATA,
        payloads.CleanupOldDataPayload,
        1,
        600,
        "Archive finished jobs past their retention",
    ),
]


def _is_async(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` (a function or a callable object) is a coroutine function."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


def _check_backoff(job_type: str, backoff: Callable[[int], float]) -> None:
    for attempt in range(1, 11):
        try:
            delay = float(backoff(attempt))
        except Exception as exc:
            raise errors.JobError(
                f"backoff of {job_type!r} failed for attempt {attempt}: {exc}", "BAD_BACKOFF"
            ) from None
        if not 0 <= delay <= 7 * 86400:
            raise errors.JobError(
                f"backoff of {job_type!r} gives {delay!r} s for attempt {attempt}; "
                "give 0 to 604800 seconds",
                "BAD_BACKOFF",
            )


def default_registry() -> JobRegistry:
    """A registry holding the six built-in job types (handlers are attached by the host)."""
    registry = JobRegistry()
    for job_type, model, retries, timeout, description in _BUILT_IN:
        registry.register(
            JobConfig(
                type=job_type.value,
                endpoint=f"/api/jobs/{job_type.value}",
                retries=retries,
                timeout=timeout,
                description=description,
            ),
            model,
        )
    return registry


shared_registry = default_registry()
"""The process-wide registry used when none is passed explicitly.

Named apart from this module, so that ``jobstore.registry`` is always the module.
"""


def get_job_config(job_type: str, reg: JobRegistry | None = None) -> JobConfig:
    """The configuration of ``job_type``; JobError(code="UNKNOWN_JOB_TYPE") if unknown."""
    return (reg or shared_registry).get(job_type).config
