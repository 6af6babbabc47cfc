"""Recurring jobs: create, list, pause, resume and delete schedules as events.

The relay carries each event out against QStash (``Upstash-Schedule-Id`` = our id), and
reconciles at start-up and periodically, so a QStash that lost its state gets them back.
A schedule whose job type declares personal payload fields gets a data key of its own: the
store seals those fields in ``schedule.created`` (:meth:`jobstore.keyring.KeyRing.seal`), so
the log and QStash's schedule hold them sealed, and an erasure of its user or organization
destroys the key and deletes the schedule (:mod:`jobstore.erasure`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from pydantic import BaseModel

from jobstore import actor as actor_of
from jobstore import errors
from jobstore.address import CONTEXT_KEY, STRICT, AddressPolicy
from jobstore.event import Event
from jobstore.job import BaseJobMetadata
from jobstore.registry import JobRegistry
from jobstore.relay_schedule import SCHEDULE_ID_PREFIX
from jobstore.schedule_events import (
    ScheduleCreated,
    ScheduleDeleted,
    SchedulePaused,
    ScheduleResumed,
    ScheduleState,
    fold_schedule,
    schedule_stream,
)
from jobstore.store import NO_STREAM, EventStore
from jobstore.validation import validate_model


def validate_cron(cron: str) -> str:
    """Return ``cron`` normalised, or raise JobValidationError saying why it is invalid."""
    if not isinstance(cron, str) or not cron.strip():
        raise errors.JobValidationError("invalid cron", ["cron: must be a non-empty string"])
    text = " ".join(cron.split())
    expression = text
    if text.startswith("CRON_TZ="):
        zone, _, expression = text.partition(" ")
        _check_zone(zone.removeprefix("CRON_TZ="))
    fields = expression.split(" ")
    if len(fields) != 5:
        raise errors.JobValidationError(
            "invalid cron",
            [
                f"cron: {cron!r} has {len(fields)} fields; "
                "expected 5 (minute hour day month weekday)"
            ],
        )
    if not croniter.is_valid(expression):
        raise errors.JobValidationError(
            "invalid cron", [f"cron: {cron!r} is not a valid cron expression"]
        )
    return text


def _check_zone(zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise errors.JobValidationError(
            "invalid cron", [f"cron: CRON_TZ={zone!r} is not a known IANA time zone"]
        ) from None


class Schedules:
    """The schedule half of the dispatcher."""

    def __init__(
        self, store: EventStore, registry: JobRegistry, policy: AddressPolicy = STRICT
    ) -> None:
        self.store = store
        self.registry = registry
        self._context = {CONTEXT_KEY: policy}

    async def create(
        self,
        job_type: str,
        cron: str,
        payload: Mapping[str, Any] | BaseModel,
        metadata: Mapping[str, Any] | BaseJobMetadata | None = None,
        *,
        schedule_id: str | None = None,
        actor: str | None = None,
    ) -> str:
        """Validate and record a recurring job; return its schedule id.

        ``actor`` (``api:<token>``, ``cli:<user>``) is recorded in the event's metadata.  The
        schedule's data key (when its type declares personal fields) is made in the same
        transaction as the event, so no key exists without its schedule nor a schedule's
        key after an erasure that missed it.
        """
        spec = self.registry.get(job_type)
        text = validate_cron(cron)
        valid_payload = validate_model(spec.payload_model, payload, "payload", self._context)
        valid_metadata = validate_model(BaseJobMetadata, metadata or {}, "metadata")
        new_id = schedule_id or f"{SCHEDULE_ID_PREFIX}{uuid.uuid4().hex}"
        event = ScheduleCreated(
            schedule_id=new_id,
            job_type=spec.config.type,
            cron=text,
            payload=valid_payload.model_dump(mode="json"),
            metadata=valid_metadata.model_dump(mode="json", exclude_none=True),
            endpoint=spec.config.endpoint,
            retries=spec.config.retries,
            timeout=spec.config.timeout,
        )
        try:
            async with self.store.transaction("the schedule was not recorded") as conn:
                await self.store.append(
                    schedule_stream(new_id),
                    [event],
                    NO_STREAM,
                    metadata=actor_of.metadata(actor),
                    connection=conn,
                )
        except errors.ConcurrencyError:
            raise errors.JobError(
                f"schedule {new_id!r} already exists", "SCHEDULE_EXISTS"
            ) from None
        return new_id

    async def get(self, schedule_id: str) -> ScheduleState | None:
        """The schedule's state (deleted ones included), or None if unknown.

        As stored: its personal payload fields sealed (readers allowed to see them open
        them with ``store.keys.reveal_all``).
        """
        return fold_schedule(await self.store.read_stream(schedule_stream(schedule_id)))

    async def list(self, *, include_deleted: bool = False) -> list[ScheduleState]:
        """Every schedule, oldest first, as stored (personal fields sealed, as :meth:`get`)."""
        states = []
        for stream in await self.store.schedule_stream_ids():
            state = fold_schedule(await self.store.read_stream(stream))
            if state is not None and (include_deleted or not state.deleted):
                states.append(state)
        return sorted(states, key=lambda s: s.created_at or datetime.min.replace(tzinfo=UTC))

    async def pause(self, schedule_id: str, *, actor: str | None = None) -> None:
        """Stop the schedule firing until resumed (pausing a paused one changes nothing)."""
        await self._change(schedule_id, lambda s: [] if s.paused else [SchedulePaused()], actor)

    async def resume(self, schedule_id: str, *, actor: str | None = None) -> None:
        """Let a paused schedule fire again."""
        await self._change(schedule_id, lambda s: [ScheduleResumed()] if s.paused else [], actor)

    async def delete(self, schedule_id: str, *, actor: str | None = None) -> None:
        """Delete the schedule for good."""
        await self._change(schedule_id, lambda s: [ScheduleDeleted()], actor)

    async def _change(self, schedule_id: str, decide: Any, actor: str | None) -> None:
        state = await self.get(schedule_id)
        if state is None or state.deleted:
            raise errors.JobError(f"no schedule with id {schedule_id!r}", "SCHEDULE_NOT_FOUND")
        new_events: list[Event] = decide(state)
        if new_events:
            await self.store.append(
                schedule_stream(schedule_id),
                new_events,
                state.version,
                metadata=actor_of.metadata(actor),
            )
