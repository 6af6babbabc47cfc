"""What a job carries besides its payload: metadata, enqueue options, and the job itself."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from jobstore.address import TargetUrl
from jobstore.duration import Duration, to_seconds
from jobstore.options import Backoff, check_flow_key

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# Headers QStash or the host set themselves; a job must not override them.
_RESERVED_HEADER_PREFIXES = ("upstash-", "content-type", "content-length", "host")
MAX_DELAY_SECONDS = 7 * 86400
MAX_HEARTBEAT_SECONDS: Final = 3600


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BaseJobMetadata(BaseModel):
    """Metadata attached to every job; extra keys (e.g. a trace id) are kept as given.

    Each field also takes the seed's camelCase name (``userId`` sets ``user_id``); both
    spellings with different values are a validation error naming the two.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    user_id: int | None = Field(default=None, ge=1)
    organization_id: int | None = Field(default=None, ge=1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    created_at: datetime = Field(default_factory=_utcnow)

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        """Fold the seed's camelCase names into the field names, refusing a conflict."""
        if not isinstance(data, dict):
            return data
        folded = dict(data)
        for name, camel in _SEED_NAMES.items():
            if camel not in folded:
                continue
            value = folded.pop(camel)
            if name in folded and folded[name] != value:
                raise ValueError(
                    f"{name}={folded[name]!r} and {camel}={value!r} disagree; "
                    f"give one of them ({camel} is the seed's name for {name})"
                )
            folded[name] = value
        return folded


_SEED_NAMES: Final = {
    name: to_camel(name) for name in BaseJobMetadata.model_fields if to_camel(name) != name
}
"""Each metadata field's camelCase name in the seed (``user_id``: ``userId``)."""


class EnqueueJobOptions(BaseModel):
    """Per-job overrides: delay, retries, callbacks, headers.

    ``delay`` is seconds (not the seed's milliseconds), a timedelta, or a QStash duration
    such as ``"5m"`` (see :mod:`jobstore.duration`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    callback: TargetUrl | None = None
    failure_callback: TargetUrl | None = None
    headers: dict[str, str] | None = None
    timeout: Duration | None = None
    """This job's timeout (within its type's ``max_timeout``, else its type's timeout)."""
    rate: int | None = Field(default=None, ge=1)
    """Jobs of this flow key started per ``period`` (QStash flow control)."""
    period: Duration | None = None
    parallelism: int | None = Field(default=None, ge=1)
    """Attempts of this flow key in flight at once."""
    flow_key: str | None = Field(default=None, max_length=200)
    """Whom the limits are per, e.g. ``"{job_type}-org-{organization_id}"``."""
    backoff: Backoff | None = None
    """Delays between attempts, replacing the type's (e.g. ``{"kind": "exponential",
    "base": 5, "factor": 3, "cap": 600}``)."""
    unique_for: Duration | None = None
    """With an idempotency key: the same key within this long of its job's creation returns
    that job; after it, a new job (default: the type's, else forever)."""
    heartbeat: Duration | None = None
    """Seconds between the handler's ``job.heartbeat()`` calls (default: the type's): the
    attempt's lease is two of them, renewed by each heartbeat, up to the timeout."""

    @field_validator("heartbeat")
    @classmethod
    def _heartbeat_in_range(cls, value: Duration | None) -> Duration | None:
        if value is not None and not 0 < to_seconds(value) <= MAX_HEARTBEAT_SECONDS:
            raise ValueError(
                f"a heartbeat of {to_seconds(value):g} s is not more than 0 and at most "
                f"{MAX_HEARTBEAT_SECONDS} s"
            )
        return value

    @field_validator("flow_key")
    @classmethod
    def _flow_key_names_known_fields(cls, value: str | None) -> str | None:
        return None if value is None else check_flow_key(value)

    @field_validator("delay")
    @classmethod
    def _delay_in_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= MAX_DELAY_SECONDS:
            raise ValueError(
                f"{value:g} seconds is not between 0 and {MAX_DELAY_SECONDS} seconds (7 days)"
            )
        return value

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
        return 0.0 if self.delay is None else to_seconds(self.delay)


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
    _heartbeat: Callable[[], Awaitable[bool]] | None = PrivateAttr(default=None)

    async def heartbeat(self) -> bool:
        """Tell the host this attempt is alive, extending its lease (a long job of a type
        with a ``heartbeat`` interval must call it at least that often).

        Cheap to call often: the host records at most one heartbeat per half lease.  False
        when the attempt was closed meanwhile (another host took the job over, or it was
        failed): its outcome will then only be recorded as a late report.
        """
        if self._heartbeat is None:
            return True  # not run by a host (a test calling the handler directly)
        return await self._heartbeat()

    @property
    def idempotency_key(self) -> str:
        """Stable across the attempts of one dispatch: key side effects on it."""
        return f"{self.job_id}:{self.dispatch}"
