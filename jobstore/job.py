"""What a job carries besides its payload: metadata, enqueue options, and the job itself."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobstore.address import TargetUrl

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# Headers QStash or the host set themselves; a job must not override them.
_RESERVED_HEADER_PREFIXES = ("upstash-", "content-type", "content-length", "host")
MAX_DELAY_SECONDS = 7 * 86400


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BaseJobMetadata(BaseModel):
    """Metadata attached to every job; extra keys (e.g. a trace id) are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    user_id: int | None = Field(default=None, ge=1)
    organization_id: int | None = Field(default=None, ge=1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    created_at: datetime = Field(default_factory=_utcnow)


class EnqueueJobOptions(BaseModel):
    """Per-job overrides: delay (seconds or a timedelta), retries, callbacks, headers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay: float | timedelta | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    callback: TargetUrl | None = None
    failure_callback: TargetUrl | None = None
    headers: dict[str, str] | None = None

    @field_validator("delay")
    @classmethod
    def _delay_in_range(cls, value: float | timedelta | None) -> float | None:
        if value is None:
            return None
        seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
        if not 0 <= seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"must be between 0 and {MAX_DELAY_SECONDS} seconds (7 days)")
        return seconds

    @field_validator("headers")
    @classmethod
    def _headers_are_safe(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if name.lower().startswith(_RESERVED_HEADER_PREFIXES):
                raise ValueError(f"header {name!r} is set by jobtrail/QStash and cannot be given")
            if any(c in text for c in "\r\n\x00") or len(text) > 2000:
                raise ValueError(f"header {name!r} has a line break, NUL or is over 2000 chars")
        return value

    @property
    def delay_seconds(self) -> float:
        """The delay in seconds (0 when none)."""
        delay = self.delay
        if isinstance(delay, timedelta):
            return delay.total_seconds()
        return float(delay or 0)


class BaseJob(BaseModel):
    """A job as its handler sees it: ids, type, payload, metadata, dispatch and attempt."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    type: str
    payload: dict[str, Any]
    metadata: BaseJobMetadata
    dispatch: int = 1
    attempt: int = 1
    message_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across the attempts of one dispatch: key side effects on it."""
        return f"{self.job_id}:{self.dispatch}"
