"""The projection runner: leads each projection, catches it up, then follows the log.

Each projection runs in its own task: it waits to lead (a PostgreSQL advisory lock, see
``leadership.py``), applies batches from its checkpoint to the head of the log, then
waits for the log's NOTIFY (or ``idle_poll`` seconds, in case a notification was lost)
and goes on.  Between batches the leader checks whether a rebuild queues for its lock,
and steps down if so.  A projection that fails on an event stops there and tries again
every ``failure_retry`` seconds; the others keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Final

import asyncpg
import structlog

from jobstore import EventStore
from projections import catalog, checkpoint, errors, leadership, projection
from projections.batch import TRANSIENT, BatchApplier
from projections.projection import Projection

log = structlog.get_logger("jobtrail.projections")

# The channel the log's trigger notifies after every committed append (sql/0001).
NOTIFY_CHANNEL: Final = "jobtrail_events"


class ProjectionRunner:
    """Runs projections against the log: ``await runner.run()`` in the host, forever."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        projections: Sequence[Projection] | None = None,
        *,
        batch_size: int = 1000,
        idle_poll: float = 1.0,
        leader_retry: float = 1.0,
        failure_retry: float = 30.0,
    ) -> None:
        self.store = EventStore(pool)
        self.dsn = dsn
        self.projections = projection.select(projections or catalog.builtin_projections(), None)
        self.applier = BatchApplier(self.store, batch_size)
        self.idle_poll = idle_poll
        self.leader_retry = leader_retry
        self.failure_retry = failure_retry
        self._leading = {p.name: asyncio.Event() for p in self.projections}

    def leading(self, name: str) -> asyncio.Event:
        """Set while this runner leads projection ``name``."""
        return self._leading[name]

    async def run(self) -> None:
        """Run every projection until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                for p in self.projections:
                    group.create_task(self._run_one(p), name=f"projection {p.name}")
        finally:
            self.applier.log.close()

    async def run_until_caught_up(self) -> int:
        """Lead every projection and apply the log up to its head at the call, then return.

        Returns the number of events applied (counted per projection).  Raises
        ProjectionFailed if a projection stops on an event.  For tests and tools; hosts
        call :meth:`run`.
        """
        target = await self.store.last_position()
        # Side by side, so they share each batch the log reader reads.
        tasks = [asyncio.create_task(self._drain(p, target)) for p in self.projections]
        try:
            counts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            self.applier.log.close()
        return sum(counts)

    async def _drain(self, p: Projection, target: int) -> int:
        async with leadership.lead(self.dsn, p.name, retry=self.leader_retry):
            return await self._apply_up_to(p, target)

    async def _apply_up_to(self, p: Projection, target: int) -> int:
        position = await self._checkpoint(p)
        applied = 0
        while position < target:
            position, count = await self.applier.step(p, position)
            if count == 0:
                break
            applied += count
        return applied

    async def _run_one(self, p: Projection) -> None:
        while True:
            try:
                async with leadership.lead(self.dsn, p.name, retry=self.leader_retry) as lease:
                    self._leading[p.name].set()
                    try:
                        await self._follow(p, lease)
                    finally:
                        self._leading[p.name].clear()
                await asyncio.sleep(self.leader_retry)  # stepped down: let the rebuild in
            except errors.ProjectionFailed:
                await asyncio.sleep(self.failure_retry)
            except TRANSIENT as exc:
                log.warning("projection interrupted; retrying", projection=p.name, error=str(exc))
                await asyncio.sleep(self.leader_retry)

    async def _follow(self, p: Projection, lease: leadership.Lease) -> None:
        """Apply batches as the log grows, until a rebuild asks for the leadership."""
        wake = asyncio.Event()
        await lease.conn.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())
        position = await self._checkpoint(p)
        log.info("projection following the log", projection=p.name, position=position)
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        while True:
            if not lease.held:
                raise errors.LeadershipLost(f"the lock connection of {p.name!r} closed")
            if loop.time() >= next_check:  # at most every idle_poll: it costs a round trip
                next_check = loop.time() + self.idle_poll
                if await lease.wanted():
                    log.info("projection leadership handed over", projection=p.name)
                    return
            wake.clear()
            position, count = await self.applier.step(p, position)
            if count < self.applier.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.idle_poll)

    async def _checkpoint(self, p: Projection) -> int:
        """The projection's checkpoint, read as it takes the lead."""
        self.applier.forget(p.name)
        async with self.store.pool.acquire() as conn:
            return await checkpoint.ensure(conn, p.name)


__all__ = ["NOTIFY_CHANNEL", "ProjectionRunner"]
