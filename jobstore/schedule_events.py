"""The events of a recurring schedule (stream ``schedule-<id>``) and its folded state."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import Field

from jobstore import errors
from jobstore.event import Event, RecordedEvent


class ScheduleCreated(Event, type_name="schedule.created"):
    """A recurring job was scheduled: QStash runs it at every cron tick."""

    schedule_id: str
    job_type: str
    cron: str
    payload: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)
    endpoint: str
    retries: int = Field(ge=0)
    timeout: float = Field(gt=0)


class SchedulePaused(Event, type_name="schedule.paused"):
    """The schedule stops firing until resumed."""


class ScheduleResumed(Event, type_name="schedule.resumed"):
    """A paused schedule fires again."""


class ScheduleDeleted(Event, type_name="schedule.deleted"):
    """The schedule is gone for good."""


def schedule_stream(schedule_id: str) -> str:
    """The event stream of a schedule."""
    return f"schedule-{schedule_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleState:
    """A schedule as its events describe it."""

    schedule_id: str
    version: int
    job_type: str
    cron: str
    payload: dict[str, Any]
    metadata: dict[str, Any]
    endpoint: str
    retries: int
    timeout: float
    created_at: datetime
    paused: bool = False
    deleted: bool = False


def fold_schedule(events: Iterable[RecordedEvent]) -> ScheduleState | None:
    """The state after all of a schedule's ``events`` (None for an empty stream)."""
    state: ScheduleState | None = None
    for recorded in events:
        event = recorded.event
        if isinstance(event, ScheduleCreated):
            state = ScheduleState(
                schedule_id=event.schedule_id,
                version=recorded.version,
                job_type=event.job_type,
                cron=event.cron,
                payload=event.payload,
                metadata=event.metadata,
                endpoint=event.endpoint,
                retries=event.retries,
                timeout=event.timeout,
                created_at=recorded.recorded_at,
            )
        elif state is None:
            raise errors.EventStoreError(
                f"stream {recorded.stream_id!r} starts with {event.type_name}"
            )
        elif isinstance(event, SchedulePaused | ScheduleResumed | ScheduleDeleted):
            state = dataclasses.replace(
                state,
                version=recorded.version,
                paused=isinstance(event, SchedulePaused)
                or (state.paused and not isinstance(event, ScheduleResumed)),
                deleted=state.deleted or isinstance(event, ScheduleDeleted),
            )
    return state
