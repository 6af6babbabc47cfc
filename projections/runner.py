"""The projection runner: each projection is a checkpointed, elected follower of the log.

Each projection runs as a :class:`jobstore.Follower` under its own name: it waits to lead
(the election of that name), applies batches from its checkpoint to the head of the log,
then waits for the log's NOTIFY (or ``idle_poll`` seconds) and goes on.  A batch's rows
and its checkpoint commit in one transaction, so each event is applied once.  Between
batches the leader checks whether a rebuild queues for its role, and steps down if so.
A projection that fails on an event stops there, records why (``jobtrail projections
status`` shows it) and tries again with a growing delay, up to ``failure_retry`` seconds;
the others keep running.  Projections led by one runner share each batch they read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import asyncpg

import jobstore
from jobstore import EventStore, RecordedEvent, follower
from projections import catalog, errors, projection
from projections.log_reader import LogReader
from projections.projection import Projection, Tables, use_tables


class _Apply:
    """A projection as a follower's handler: its rows and the checkpoint in one transaction."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection

    async def handle(self, batch: Sequence[RecordedEvent], commit: follower.Commit) -> None:
        async with commit() as conn:
            await use_tables(conn, Tables.LIVE)
            await self.projection.apply(conn, batch)


LINGER: Final = 0.05
"""Seconds the projections wait after a notification, from their last read, before reading
again (``FollowerConfig.linger``): at a steady trickle of jobs each projection reads and
commits at most 20 times a second instead of once per append, and the views stay within
~50 ms of the log (a backlog is read page after page)."""


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
        linger: float = LINGER,
    ) -> None:
        self.store = EventStore(pool)
        self.dsn = dsn
        self.projections = projection.select(projections or catalog.builtin_projections(), None)
        self.log = LogReader(self.store, batch_size)
        config = jobstore.FollowerConfig(
            batch_size=batch_size,
            idle_poll=idle_poll,
            leader_retry=leader_retry,
            failure_retry=failure_retry,
            linger=linger,
        )
        self.followers = {
            p.name: jobstore.Follower(
                self.store, p.name, _Apply(p), dsn=dsn, config=config, read=self.log.after
            )
            for p in self.projections
        }

    def leading(self, name: str) -> asyncio.Event:
        """Set while this runner leads projection ``name``."""
        return self.followers[name].leading

    async def run(self) -> None:
        """Run every projection until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                for name, f in self.followers.items():
                    group.create_task(f.run(), name=f"projection {name}")
        finally:
            self.log.close()

    async def run_until_caught_up(self) -> int:
        """Lead every projection and apply the log up to its head at the call, then return.

        Returns the number of events applied (counted per projection).  Raises
        ProjectionFailed if a projection stops on an event.  For tests and tools; hosts
        call :meth:`run`.
        """
        target = await self.store.head()
        # Side by side, so they share each batch the log reader reads.
        tasks = [asyncio.create_task(self._drain(f, target)) for f in self.followers.values()]
        try:
            # Each one drains (or stops on an event and records why) before the first
            # failure is raised: a projection that stops does not cut the others short.
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            self.log.close()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return sum(o for o in outcomes if isinstance(o, int))

    async def _drain(self, f: jobstore.Follower, target: jobstore.Cursor) -> int:
        try:
            return await f.run_until_caught_up(target)
        except jobstore.FollowerStopped as exc:
            raise errors.ProjectionFailed(
                exc.name,
                exc.position,
                exc.error,
                stream_id=exc.stream_id,
                event_type=exc.event_type,
            ) from exc
        except jobstore.LeadershipLost as exc:
            raise errors.LeadershipLost(str(exc)) from exc


__all__ = ["ProjectionRunner"]
