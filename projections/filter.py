"""Which jobs a list or a bulk replay selects: validated once, here, for Python and HTTP alike.

Every invalid value is an InvalidFilterError naming the parameter, the bad value, and
what would be valid; nothing unchecked reaches SQL (and nothing reaches it as SQL text:
values are bound parameters).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, get_args

from jobstore import JOB_STATUSES, job_events
from projections import errors

MAX_TEXT: Final = 200
_BIGINT_MAX: Final = 2**63 - 1
_TYPE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_STATUSES: Final = ", ".join(s.value for s in JOB_STATUSES)
SOURCES: Final[tuple[str, ...]] = get_args(job_events.DispatchSource)
"""Where a job's current dispatch came from: api, schedule, replay or recovery."""
_REPLAYABLE: Final = (JOB_STATUSES.FAILED, JOB_STATUSES.CANCELLED)


@dataclasses.dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs to select; None means "any".  Times are inclusive; error_contains ignores case.

    ``source`` is where the job's current dispatch came from (api, schedule, replay,
    recovery); ``schedule_id`` the schedule whose run minted the job.
    """

    SOURCES: ClassVar[tuple[str, ...]] = SOURCES
    status: JOB_STATUSES | None = None
    type: str | None = None
    user_id: int | None = None
    organization_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    error_contains: str | None = None
    schedule_id: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "status", parse_status(self.status))
        set_(self, "type", _job_type(self.type))
        set_(self, "user_id", _id("user_id", self.user_id))
        set_(self, "organization_id", _id("organization_id", self.organization_id))
        set_(self, "created_from", _time("created_from", self.created_from))
        set_(self, "created_to", _time("created_to", self.created_to))
        set_(self, "error_contains", _text("error_contains", self.error_contains))
        set_(self, "schedule_id", _text("schedule_id", self.schedule_id))
        set_(self, "source", _source(self.source))
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise errors.InvalidFilterError(
                "created_from",
                f"{self.created_from.isoformat()} is after created_to "
                f"{self.created_to.isoformat()}",
            )

    def for_replay(self) -> JobFilter:
        """This filter, if a bulk replay may use it: not empty, replayable statuses only."""
        if all(value is None for value in self.arguments()):
            raise errors.InvalidFilterError(
                "filter",
                f"a bulk replay needs at least one filter ({', '.join(FILTER_PARAMETERS)})",
            )
        if self.status is not None and self.status not in _REPLAYABLE:
            raise errors.InvalidFilterError(
                "status",
                f"{self.status.value!r} jobs cannot be replayed; "
                "filter on failed or cancelled, or leave status out",
            )
        return self

    @classmethod
    def from_strings(cls, params: Mapping[str, str]) -> JobFilter:
        """A filter from text values (an HTTP query or JSON body); unknown names are errors."""
        values: dict[str, Any] = {}
        for name, value in params.items():
            if name not in FILTER_PARAMETERS:
                raise errors.InvalidFilterError(
                    name, f"unknown filter; known: {', '.join(FILTER_PARAMETERS)}"
                )
            values[name] = _parse(name, value)
        return cls(**values)

    def arguments(self) -> list[Any]:
        """The SQL parameters $1..$9 of the job queries (reader.sql), in order."""
        return [
            None if self.status is None else self.status.value,
            self.type,
            self.user_id,
            self.organization_id,
            self.created_from,
            self.created_to,
            None if self.error_contains is None else f"%{_escape_like(self.error_contains)}%",
            self.schedule_id,
            self.source,
        ]

    def digest(self) -> str:
        """A short stable fingerprint, binding a cursor to the filter it was issued for."""
        text = repr([None if v is None else str(v) for v in self.arguments()])
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


FILTER_PARAMETERS: Final = tuple(field.name for field in dataclasses.fields(JobFilter))
"""Every filter's name, as the API's query parameters and JSON fields spell it."""


def check_job_id(value: object, parameter: str = "job_id") -> str:
    """``value`` as a canonical job id (a UUID), or InvalidFilterError naming ``parameter``."""
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError
        return str(uuid.UUID(value))
    except ValueError:
        raise errors.InvalidFilterError(
            parameter, f"{_show(value)} is not a job id (a UUID such as {uuid.UUID(int=0)})"
        ) from None


def _parse(name: str, value: object) -> object:
    if not isinstance(value, str):
        return value  # typed JSON (numbers…) is checked by the field validators
    if name in ("user_id", "organization_id"):
        if not _DIGITS.fullmatch(value):
            raise errors.InvalidFilterError(name, f"{_show(value)} is not a positive integer")
        return int(value)
    if name in ("created_from", "created_to"):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise errors.InvalidFilterError(
                name, f"{_show(value)} is not an ISO 8601 time such as 2026-01-31T12:00:00Z"
            ) from None
    return value


def parse_status(value: object) -> JOB_STATUSES | None:
    """``value`` as a job status, or InvalidFilterError('status') naming the valid ones."""
    if value is None or isinstance(value, JOB_STATUSES):
        return value
    try:
        return JOB_STATUSES(str(value) if isinstance(value, str) else "")
    except ValueError:
        raise errors.InvalidFilterError(
            "status", f"{_show(value)} is not one of {_STATUSES}"
        ) from None


def _job_type(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _TYPE.fullmatch(value):
        raise errors.InvalidFilterError(
            "type",
            f"{_show(value)} is not a job type name (lowercase letters, digits, '.', '_', '-'; "
            "at most 100 characters)",
        )
    return value


def _source(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value in SOURCES):
        return value
    raise errors.InvalidFilterError("source", f"{_show(value)} is not one of {', '.join(SOURCES)}")


def _id(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _BIGINT_MAX:
        raise errors.InvalidFilterError(
            name, f"{_show(value)} is not an integer from 1 to {_BIGINT_MAX}"
        )
    return value


def _time(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise errors.InvalidFilterError(name, f"{_show(value)} is not a date and time")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        return aware.astimezone(UTC)
    except (OverflowError, ValueError):
        raise errors.InvalidFilterError(name, f"{_show(value)} is out of range") from None


def _text(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT or "\x00" in value:
        raise errors.InvalidFilterError(
            name, f"{_show(value)} must be text of 1 to {MAX_TEXT} characters without NUL"
        )
    return value


def _escape_like(text: str) -> str:
    """``text`` matched literally inside ILIKE (whose escape character is backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _show(value: object) -> str:
    """A bad value, quoted and cut short, safe to put in an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
