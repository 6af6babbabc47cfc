"""Applying one batch of events to one projection: effects and checkpoint in one transaction.

A batch that cannot be applied is retried event by event, so the events before the bad
one are applied and the failure names the exact position and event; the checkpoint never
moves past it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NoReturn

import asyncpg
import structlog

from jobstore import DatabaseUnavailableError, EventStore, JobstoreError, RecordedEvent
from projections import checkpoint, errors
from projections.log_reader import LogReader
from projections.projection import Projection, Tables, use_tables

log = structlog.get_logger("jobtrail.projections")

DRIVER_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)
"""Driver failures that say nothing about the events (lost connection, deadlock…)."""
TRANSIENT: tuple[type[BaseException], ...] = (
    DatabaseUnavailableError,
    errors.LeadershipLost,
    *DRIVER_TRANSIENT,
)
"""Failures after which the runner waits and tries again from the checkpoint."""


class BatchApplier:
    """Reads a projection's next batch from the log and applies it (the runner's step)."""

    def __init__(self, store: EventStore, batch_size: int) -> None:
        self.store = store
        self.batch_size = batch_size
        self.log = LogReader(store, batch_size)
        self._no_failure: set[str] = set()  # projections whose failure record is cleared

    def forget(self, name: str) -> None:
        """Clear ``name``'s failure record on its next commit (another process may have
        written one while it led)."""
        self._no_failure.discard(name)

    async def step(self, projection: Projection, position: int) -> tuple[int, int]:
        """Apply the batch after ``position``; return (new position, events applied).

        Raises ProjectionFailed on an event that cannot be applied, DatabaseUnavailableError
        when the database went away, and LeadershipLost if another process applied first.
        """
        try:
            return await self._step(projection, position)
        except DRIVER_TRANSIENT as exc:
            raise DatabaseUnavailableError(
                f"projection {projection.name!r} lost the database at position {position}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    async def _step(self, projection: Projection, position: int) -> tuple[int, int]:
        try:
            batch = await self.log.after(position)
        except DatabaseUnavailableError:
            raise
        except JobstoreError:
            return await self._read_singly(projection, position)
        if not batch:
            return position, 0
        return await self._apply(projection, position, batch)

    async def _apply(
        self, projection: Projection, position: int, batch: Sequence[RecordedEvent]
    ) -> tuple[int, int]:
        try:
            await self.commit(projection, position, batch)
        except TRANSIENT:
            raise
        except Exception:
            return await self._apply_singly(projection, position, batch)
        return batch[-1].position, len(batch)

    async def commit(
        self, projection: Projection, expected: int, batch: Sequence[RecordedEvent]
    ) -> None:
        """Apply ``batch`` and move the checkpoint from ``expected``, in one transaction."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            await use_tables(conn, Tables.LIVE)
            if not await checkpoint.advance(conn, projection.name, expected, batch[-1].position):
                raise errors.LeadershipLost(
                    f"the checkpoint of {projection.name!r} is no longer at {expected}: "
                    "another process applied this batch"
                )
            await projection.apply(conn, batch)
            if projection.name not in self._no_failure:
                await checkpoint.clear_failure(conn, projection.name)
        self._no_failure.add(projection.name)

    async def _apply_singly(
        self, projection: Projection, position: int, batch: Sequence[RecordedEvent]
    ) -> tuple[int, int]:
        """Apply event by event to find the one that fails; apply those before it."""
        for recorded in batch:
            try:
                await self.commit(projection, position, [recorded])
            except TRANSIENT:
                raise
            except Exception as exc:
                await self._fail(projection, recorded, exc)
            position = recorded.position
        return position, len(batch)

    async def _read_singly(self, projection: Projection, position: int) -> tuple[int, int]:
        """A batch that cannot be read (decoded): apply event by event up to the bad one."""
        applied = 0
        while applied < self.batch_size:
            try:
                batch = await self.store.read_all(position, 1)
            except DatabaseUnavailableError:
                raise
            except JobstoreError as exc:
                await self._fail_unreadable(projection, position, exc)
            if not batch:
                break
            position, count = await self._apply(projection, position, batch)
            applied += count
        return position, applied

    async def _fail(
        self, projection: Projection, recorded: RecordedEvent, exc: Exception
    ) -> NoReturn:
        error = _describe(exc)
        await self._record(
            projection.name, recorded.position, error, recorded.stream_id, recorded.type_name
        )
        raise errors.ProjectionFailed(
            projection.name,
            recorded.position,
            error,
            stream_id=recorded.stream_id,
            event_type=recorded.type_name,
        ) from exc

    async def _fail_unreadable(
        self, projection: Projection, after: int, exc: Exception
    ) -> NoReturn:
        async with self.store.pool.acquire() as conn:
            row = await checkpoint.next_event(conn, after)
        position = row["position"] if row else after + 1
        stream_id = row["stream_id"] if row else None
        event_type = row["event_type"] if row else None
        error = _describe(exc)
        await self._record(projection.name, position, error, stream_id, event_type)
        raise errors.ProjectionFailed(
            projection.name, position, error, stream_id=stream_id, event_type=event_type
        ) from exc

    async def _record(
        self, name: str, position: int, error: str, stream_id: str | None, event_type: str | None
    ) -> None:
        self._no_failure.discard(name)
        log.error(
            "projection stopped on an event",
            projection=name,
            position=position,
            stream_id=stream_id,
            event_type=event_type,
            error=error,
        )
        async with self.store.pool.acquire() as conn:
            await checkpoint.record_failure(
                conn, name, position, error, stream_id=stream_id, event_type=event_type
            )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
