"""The scheduler: fires due schedules, each run a normal message carrying its schedule id."""

from __future__ import annotations

import asyncio
import logging

from qstash_local.error import QStashLocalError
from qstash_local.publisher import Publisher
from qstash_local.schedule import Schedule

log = logging.getLogger(__name__)


class Scheduler:
    """Checks the schedules every tick against the configured (injectable) clock."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.state = publisher.state
        self.config = publisher.state.config

    async def run(self) -> None:
        """Fire due schedules every ``scheduler_tick_s`` until cancelled."""
        while True:
            try:
                self.fire_due()
            except Exception:  # one broken schedule must not stop the scheduler
                log.exception("scheduler tick failed")
            await asyncio.sleep(self.config.scheduler_tick_s)

    def fire_due(self) -> int:
        """Fire every schedule whose next time has come; return how many fired."""
        now = self.config.clock()
        fired = 0
        for schedule in list(self.state.schedules.values()):
            if schedule.paused or schedule.next_s > now:
                continue
            # Missed runs are not replayed: one run, then the next cron time after now.
            schedule.next_s = schedule.cron.next_after(now)
            schedule.last_s = now
            self._fire(schedule)
            fired += 1
        return fired

    def _fire(self, schedule: Schedule) -> None:
        try:
            targets = self.publisher.targets(schedule.destination)
        except QStashLocalError as exc:
            schedule.error = exc.message
            schedule.last_states = {}
            log.warning("schedule %s could not run: %s", schedule.id, exc.message)
            return
        results = self.publisher.publish(
            targets,
            schedule.spec,
            schedule.body,
            queue_name=schedule.queue_name,
            schedule_id=schedule.id,
            caller_ip=schedule.caller_ip,
        )
        schedule.error = None
        schedule.last_states = {r.message_id: "IN_PROGRESS" for r in results}
