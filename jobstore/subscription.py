"""Following the log without a checkpoint: yield events after a position, live.

The same tail as every follower of the log (:class:`jobstore.follower.Tail`), for readers
that keep their position in memory (``jobtrail events tail --follow``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType

import asyncpg
import structlog

from jobstore import database, errors
from jobstore.event import RecordedEvent
from jobstore.follower import Tail
from jobstore.store import EventStore

log = structlog.get_logger("jobtrail.subscription")


class Subscription:
    """Events after a position, in order, forever: ``async with Subscription(...) as s``.

    A dedicated connection LISTENs for the log's notification (one per committed
    transaction); ``idle_poll`` seconds without one trigger a read anyway, so a lost
    notification (e.g. while reconnecting after a PostgreSQL restart) delays but never
    loses events.
    """

    def __init__(
        self,
        store: EventStore,
        dsn: str,
        after_position: int = 0,
        *,
        batch_size: int = 500,
        idle_poll: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self.position = after_position
        self._tail = Tail(lambda after: store.read_all(after, batch_size), batch_size, idle_poll)
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Subscription:
        await self._listen()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await database.close_quietly(conn)

    def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[RecordedEvent]:
        while True:
            try:
                batch = await self._tail.read(self.position)
            except errors.DatabaseUnavailableError as exc:
                log.warning("subscription read failed; retrying", error=str(exc))
                await asyncio.sleep(min(self._tail.idle_poll, 1.0))
                continue
            for recorded in batch:
                self.position = recorded.position
                yield recorded
            if len(batch) < self._tail.batch_size:
                await self._wait()

    async def _wait(self) -> None:
        if self._conn is None or self._conn.is_closed():
            with contextlib.suppress(errors.DatabaseUnavailableError):
                await self._listen()
        await self._tail.wait()

    async def _listen(self) -> None:
        conn = await database.connect(self._dsn)
        try:
            await self._tail.listen(conn)
        except BaseException:
            await database.close_quietly(conn)
            raise
        self._conn = conn
