"""How one dispatch of a job runs: its typed options, with every default stated once.

The same model is written by an API enqueue, a replay, a recovery and a scheduled run,
and read by the relay (what QStash is told), the host (timeout, lease, retry budget) and
the fold.  Events written before the model existed are read unchanged: their extra
keys (``qstash_timeout``) are ignored and derived again from the timeout.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from jobstore.registry import JobConfig

DEFAULT_RETRIES: Final = 0
DEFAULT_TIMEOUT_S: Final = 30.0
QSTASH_TIMEOUT_MARGIN_S: Final = 30
"""Seconds QStash waits beyond a job's timeout, so it never gives up on a live attempt."""


QSTASH_RETRY_HEADROOM: Final = 10
"""Retries QStash gets beyond a job's own ``retries``.  The host owns the retry budget: it
counts handler attempts in the job's history and fails the job itself (answering 489) when
they are spent, so QStash's extra retries are spent only on the host's own "try later"
answers (a 503 while the database restarts, a lease still live), never on the job's."""


HEARTBEATS_PER_LEASE: Final = 2
"""A heartbeating attempt's lease lasts this many heartbeat intervals: one missed beat is
tolerated, two lose the attempt."""


def qstash_timeout(timeout: float) -> int:
    """What QStash is told to wait for one delivery of a job with ``timeout`` seconds."""
    return int(timeout) + QSTASH_TIMEOUT_MARGIN_S


FLOW_KEY_FIELDS: Final = ("job_type", "organization_id", "user_id")
"""What a flow-control key template may name: ``"{job_type}-org-{organization_id}"``."""
_FLOW_KEY_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")
"""QStash takes letters, digits, '.', '_' and '-' in a flow-control key."""


class FlowControl(BaseModel):
    """QStash flow control for one dispatch: at most ``parallelism`` deliveries of ``key`` in
    flight, and ``rate`` started per ``period`` seconds (QStash enforces both)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1, max_length=200)
    rate: int | None = Field(default=None, ge=1)
    period: int = Field(default=1, ge=1, le=7 * 86400)
    parallelism: int | None = Field(default=None, ge=1)

    def qstash(self) -> dict[str, Any]:
        """The SDK's ``flow_control`` of a published message."""
        limits: dict[str, Any] = {"key": self.key, "period": self.period}
        if self.rate is not None:
            limits["rate"] = self.rate
        if self.parallelism is not None:
            limits["parallelism"] = self.parallelism
        return limits


def check_flow_key(template: str) -> str:
    """``template`` if it names only :data:`FLOW_KEY_FIELDS`; ValueError saying which else."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"flow key {template!r} is not a valid template: {exc}") from None
    names = {name for _, name, _, _ in parts if name is not None}
    literal = "".join(text for text, _, _, _ in parts)
    if _FLOW_KEY_UNSAFE.search(literal):
        raise ValueError(
            f"flow key {template!r} may hold only letters, digits, '.', '_' and '-' "
            "besides its {placeholders}"
        )
    unknown = names - set(FLOW_KEY_FIELDS)
    if unknown:
        raise ValueError(
            f"flow key {template!r} names {', '.join(sorted(unknown))}; a key may name "
            f"{', '.join('{' + f + '}' for f in FLOW_KEY_FIELDS)}"
        )
    return template


def flow_control(
    template: str,
    job_type: str,
    metadata: Mapping[str, Any],
    *,
    rate: int | None,
    period: float | None,
    parallelism: int | None,
) -> FlowControl | None:
    """The flow control of one job (None without limits): its key rendered from the job."""
    if rate is None and parallelism is None:
        return None
    values = {"job_type": job_type, **{f: metadata.get(f, "none") for f in FLOW_KEY_FIELDS[1:]}}
    key = _FLOW_KEY_UNSAFE.sub("-", check_flow_key(template).format_map(values))
    whole = max(1, math.ceil(period)) if period else 1
    return FlowControl(key=key, rate=rate, period=whole, parallelism=parallelism)


class Backoff(BaseModel):
    """When the next attempt comes after a failed one: ``exponential`` (base × factor^(n-1)),
    ``linear`` (base × n) or ``fixed`` (base), in seconds, never more than ``cap``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["exponential", "linear", "fixed"] = "exponential"
    base: float = Field(default=1.0, ge=0, le=86400)
    factor: float = Field(default=2.0, ge=1, le=100)
    cap: float = Field(default=3600.0, ge=0, le=7 * 86400)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1, 2, …)."""
        n = max(1, attempt)
        match self.kind:
            case "exponential":
                raw = self.base * self.factor ** min(n - 1, 64)
            case "linear":
                raw = self.base * n
            case "fixed":
                raw = self.base
        return float(min(self.cap, raw))


class DispatchOptions(BaseModel):
    """One dispatch's endpoint, retry budget, timeout, delay, callbacks and headers."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint: str | None = None
    retries: int = Field(default=DEFAULT_RETRIES, ge=0)
    timeout: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    not_before: float | None = None
    callback: str | None = None
    failure_callback: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    flow_control: FlowControl | None = None
    backoff: Backoff | None = None
    """None: QStash's own retry schedule."""
    heartbeat: float | None = Field(default=None, gt=0)
    """Seconds between the handler's ``job.heartbeat()`` calls; None: no heartbeat asked."""

    @classmethod
    def for_job(cls, config: JobConfig, **overrides: Any) -> DispatchOptions:
        """The options of a job of ``config``'s type; ``overrides`` that are None are unset."""
        given = {k: v for k, v in overrides.items() if v is not None}
        defaults = {
            "endpoint": config.endpoint,
            "retries": config.retries,
            "timeout": config.timeout,
            "backoff": config.backoff,
            "heartbeat": config.heartbeat,
        }
        return cls.model_validate(defaults | given)

    @property
    def lease_seconds(self) -> float:
        """How long an attempt's lease lasts from its start or its last heartbeat (before
        the host's grace): two heartbeat intervals when the job heartbeats (a host that
        stops loses the attempt soon), else the whole timeout; never beyond the timeout."""
        if self.heartbeat is None:
            return self.timeout
        return min(self.timeout, HEARTBEATS_PER_LEASE * self.heartbeat)

    @property
    def qstash_retries(self) -> int:
        """Retries QStash is told to make: the job's budget plus the host's headroom."""
        return self.retries + QSTASH_RETRY_HEADROOM

    @property
    def qstash_timeout(self) -> int:
        """Seconds QStash waits for one delivery (the timeout plus a margin)."""
        return qstash_timeout(self.timeout)

    def remaining_delay(self, now: float) -> DispatchOptions:
        """The same options for another dispatch of the same job (a recovery, a replay): the
        delay that is left at ``now`` (Unix seconds), none once ``not_before`` has passed."""
        if self.not_before is not None and self.not_before > now:
            return self
        return self.model_copy(update={"not_before": None})
