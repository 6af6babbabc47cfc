"""The relay's schedule half: carry schedule events out in QStash, and reconcile."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
from qstash import AsyncQStash
from qstash.errors import QStashError

from jobstore import envelope
from jobstore.event import RecordedEvent
from jobstore.options import qstash_timeout
from jobstore.schedule_events import (
    ScheduleCreated,
    ScheduleDeleted,
    SchedulePaused,
    ScheduleResumed,
    ScheduleState,
    fold_schedule,
)
from jobstore.store import EventStore

log = structlog.get_logger("jobtrail.relay")
Retrying = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
FAILURE_CALLBACK_PATH = envelope.FAILURE_CALLBACK_PATH
SCHEDULE_ID_PREFIX = "jts_"


class ScheduleSync:
    """Keeps QStash's schedules in line with the schedule streams of the log."""

    def __init__(self, store: EventStore, qstash: AsyncQStash, public_url: str) -> None:
        self.store = store
        self.qstash = qstash
        self.public_url = public_url.rstrip("/")

    async def apply(self, recorded: RecordedEvent, retrying: Retrying) -> None:
        """Carry out one schedule event against QStash."""
        event = recorded.event
        schedule_id = recorded.stream_id.removeprefix("schedule-")
        try:
            if isinstance(event, ScheduleCreated):
                state = fold_schedule([recorded])
                assert state is not None
                await retrying(partial(self._create, state))
            elif isinstance(event, SchedulePaused):
                await retrying(partial(self.qstash.schedule.pause, schedule_id))
            elif isinstance(event, ScheduleResumed):
                await retrying(partial(self.qstash.schedule.resume, schedule_id))
            elif isinstance(event, ScheduleDeleted):
                await retrying(partial(self.qstash.schedule.delete, schedule_id))
        except QStashError as exc:  # e.g. unknown to QStash: reconciliation settles it
            log.warning("schedule change not applied", schedule_id=schedule_id, error=str(exc))
            return
        log.info("schedule synced", schedule_id=schedule_id, change=event.type_name)

    async def reconcile(self, retrying: Retrying) -> int:
        """Make QStash hold exactly the live schedules of the log; return changes made."""
        states = {}
        for stream in await self.store.schedule_stream_ids():
            state = fold_schedule(await self.store.read_stream(stream))
            if state is not None:
                states[state.schedule_id] = state
        remote = {s.schedule_id: s for s in await retrying(self.qstash.schedule.list)}
        changes = 0
        for schedule_id, state in states.items():
            if state.deleted:
                if schedule_id in remote:
                    await retrying(partial(self.qstash.schedule.delete, schedule_id))
                    changes += 1
                continue
            if schedule_id not in remote:
                await retrying(partial(self._create, state))
                changes += 1
                if state.paused:
                    await retrying(partial(self.qstash.schedule.pause, schedule_id))
            elif bool(remote[schedule_id].paused) != state.paused:
                call = self.qstash.schedule.pause if state.paused else self.qstash.schedule.resume
                await retrying(partial(call, schedule_id))
                changes += 1
        for schedule_id in remote.keys() - states.keys():
            if schedule_id.startswith(SCHEDULE_ID_PREFIX):
                await retrying(partial(self.qstash.schedule.delete, schedule_id))
                changes += 1
        if changes:
            log.info("schedules reconciled", changes=changes)
        return changes

    async def _create(self, state: ScheduleState) -> str:
        schedule_id: str = await self.qstash.schedule.create_json(
            destination=self.public_url + state.endpoint,
            cron=state.cron,
            body=envelope.scheduled_body(
                state.schedule_id, state.job_type, state.payload, state.metadata
            ),
            retries=state.retries,
            timeout=f"{qstash_timeout(state.timeout)}s",
            failure_callback=self.public_url + FAILURE_CALLBACK_PATH,
            schedule_id=state.schedule_id,
            label=state.job_type,
        )
        return schedule_id
