"""Following the log without a checkpoint: yield events after a cursor, live.

The same tail as every follower of the log (:class:`jobstore.follower.Tail`), reading by
the same rule (:meth:`EventStore.read_after`), for readers that keep their cursor in
memory (``jobtrail events tail --follow``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType

import asyncpg
import structlog

from jobstore import database, errors
from jobstore.cursor import Cursor
from jobstore.event import RecordedEvent
from jobstore.follower import Tail
from jobstore.store import EventStore

log = structlog.get_logger("jobtrail.subscription")


class Subscription:
    """Events after a cursor, in reading order, forever: ``async with Subscription(...) as s``.

    Start ``after`` a cursor, or ``after_position`` (the cursor of the event there).

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
        after: Cursor | None = None,
    ) -> None:
        self._dsn = dsn
        self._store = store
        self._start = after_position
        self.cursor = after if after is not None else Cursor(0, after_position)
        self._resolved = after is not None or after_position == 0
        self._tail = Tail(
            lambda c: store.read_after(c, batch_size), batch_size, idle_poll, name="subscription"
        )
        self._conn: asyncpg.Connection | None = None

    @property
    def position(self) -> int:
        """The position of the last event yielded (or the one started after)."""
        return self.cursor.position

    async def __aenter__(self) -> Subscription:
        if not self._resolved:
            self.cursor = await self._store.cursor_of(self._start)
            self._resolved = True
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
                page = await self._tail.read(self.cursor)
            except errors.DatabaseUnavailableError as exc:
                log.warning("subscription read failed; retrying", error=str(exc))
                await asyncio.sleep(min(self._tail.idle_poll, 1.0))
                continue
            for recorded in page.events:
                self.cursor = Cursor.of(recorded)
                yield recorded
            if len(page.events) < self._tail.batch_size:
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
        except BaseException as exc:
            await database.close_quietly(conn)
            if errors.is_transient(exc):  # lost between connect and LISTEN: try again later
                raise errors.unavailable(exc, "listening for new events") from exc
            raise
        self._conn = conn
