"""How one dispatch of a job runs: its typed options, with every default stated once.

The same model is written by an API enqueue, a replay, a recovery and a scheduled run,
and read by the relay (what QStash is told), the host (timeout, lease) and the fold
(retry budget).  Events written before the model existed are read unchanged: their extra
keys (``qstash_timeout``) are ignored and derived again from the timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from jobstore.registry import JobConfig

DEFAULT_RETRIES: Final = 0
DEFAULT_TIMEOUT_S: Final = 30.0
QSTASH_TIMEOUT_MARGIN_S: Final = 30
"""Seconds QStash waits beyond a job's timeout, so it never gives up on a live attempt."""


def qstash_timeout(timeout: float) -> int:
    """What QStash is told to wait for one delivery of a job with ``timeout`` seconds."""
    return int(timeout) + QSTASH_TIMEOUT_MARGIN_S


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

    @classmethod
    def for_job(cls, config: JobConfig, **overrides: Any) -> DispatchOptions:
        """The options of a job of ``config``'s type; ``overrides`` that are None are unset."""
        given = {k: v for k, v in overrides.items() if v is not None}
        defaults = {
            "endpoint": config.endpoint,
            "retries": config.retries,
            "timeout": config.timeout,
        }
        return cls.model_validate(defaults | given)

    @property
    def qstash_timeout(self) -> int:
        """Seconds QStash waits for one delivery (the timeout plus a margin)."""
        return qstash_timeout(self.timeout)

    def without_delay(self) -> DispatchOptions:
        """The same options for a dispatch that runs now (a recovery)."""
        return self.model_copy(update={"not_before": None})
