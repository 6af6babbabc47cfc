"""Typed events: a stable type string, a schema version, and upcasting of old versions.

An event class declares its type string and schema version as class keywords::

    class JobCompleted(Event, type_name="job.completed", version=2): ...

The type string (never a Python import path) and the version are what the log stores.
When an older schema version is read back, the registered upcasters turn its data into
the current shape before the model validates it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticSerializationError

from jobstore import errors

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_EVENT_TYPES: dict[str, type[Event]] = {}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class Event(BaseModel):
    """Base class of every event type; subclasses name their type and schema version."""

    # NaN and infinities stay floats when dumped, so the codec can refuse them by name
    # instead of pydantic silently turning them into null.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    type_name: ClassVar[str]
    schema_version: ClassVar[int]

    def to_json_data(self) -> dict[str, Any]:
        """The event's data as JSON-compatible values (what the log stores)."""
        try:
            return self.model_dump(mode="json")
        except PydanticSerializationError as exc:
            raise errors.InvalidEventError(
                f"{self.type_name} event cannot be stored as JSON: {exc}"
            ) from None

    def __init_subclass__(
        cls, *, type_name: str | None = None, version: int = 1, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type_name is None:
            return
        if type_name in _EVENT_TYPES and _EVENT_TYPES[type_name].__qualname__ != cls.__qualname__:
            raise ValueError(f"event type {type_name!r} is already registered")
        cls.type_name = type_name
        cls.schema_version = version
        _EVENT_TYPES[type_name] = cls


def upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning ``type_name`` data of ``from_version`` into the next one."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return register


def known_types() -> list[str]:
    """Every registered event type string, sorted."""
    return sorted(_EVENT_TYPES)


def event_class(type_name: str) -> type[Event]:
    """The class registered for ``type_name``; UnknownEventTypeError names the known ones."""
    try:
        return _EVENT_TYPES[type_name]
    except KeyError:
        raise errors.UnknownEventTypeError(type_name, known_types()) from None


def decode(type_name: str, schema_version: int, data: dict[str, Any]) -> Event:
    """Build the current model of an event stored as ``type_name`` at ``schema_version``."""
    cls = event_class(type_name)
    version = schema_version
    while version < cls.schema_version:
        step = _UPCASTERS.get((type_name, version))
        if step is None:
            raise errors.EventStoreError(
                f"no upcaster for {type_name!r} from schema version {version} "
                f"to {cls.schema_version}"
            )
        data = step(data)
        version += 1
    if version > cls.schema_version:
        raise errors.EventStoreError(
            f"{type_name!r} schema version {schema_version} is newer than this program "
            f"knows ({cls.schema_version}); upgrade jobtrail"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise errors.EventStoreError(
            f"stored {type_name!r} event does not match its schema: {exc}"
        ) from None


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the log holds it: where it stands, when, and the typed event itself."""

    position: int
    stream_id: str
    version: int
    event: Event
    metadata: dict[str, Any]
    recorded_at: datetime
    transaction: int = 0
    """The id (xid8) of the transaction that wrote it; followers read by (transaction, position)."""

    @property
    def type_name(self) -> str:
        """The event's type string, e.g. ``job.dispatched``."""
        return self.event.type_name
