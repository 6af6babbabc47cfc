"""Followers of the log: checkpointed, elected, woken by NOTIFY, never skipping an event.

A follower reads the batch after its checkpoint and hands it to its handler together with
``commit``: a transaction that moves the checkpoint, in which the handler writes its own
effects.  A projection writes its rows there, so its effects happen exactly once; the
relay publishes to QStash first and commits its message ids after, so a crash in between
repeats the publication (deduplicated downstream) and never loses it.

Followers read through :meth:`EventStore.read_after`: in (transaction, position) order,
below the oldest transaction still running, so nothing can commit behind them; their
checkpoint is the :class:`jobstore.Cursor` of the last event handled.  After a short batch
the follower waits for the log's NOTIFY (one per committed append), or ``idle_poll``
seconds in case a notification was lost; when committed events wait behind a running
transaction (whose end sends no notification) it looks again soon, backing off.  Held back
for longer than ``lag_warning`` seconds, it logs a warning, and again each time the wait
doubles.  A batch the handler cannot
handle is retried event by event: the events before the bad one are committed, the bad
one is recorded (position, stream, type, error) and the follower stops there, trying
again with a growing delay; it never moves past an event it did not handle.  With an
election (the default) only one process follows under a name at a time, and the holder
steps down between batches when someone queues for the role (a rebuild).

:class:`Tail` is the part without a checkpoint (read after a position, wait for NOTIFY),
shared with :class:`jobstore.Subscription`.

A handler that acts on a few event types declares them (``handles``, next to the code that
acts on them): its follower then reads pages of every event but is sent, decodes and hands
on only the events of those types, and its checkpoint still moves past the others, lazily:
a page with none of them moves only the position the follower has seen (in memory), and
that is written as its checkpoint with the next page it handles, once the log has been
quiet for ``checkpoint_quiet`` seconds (so the lag read from the database is right soon
after the log goes idle), at least once per ``checkpoint_every`` seconds under a steady
trickle, at the end of :meth:`Follower.run_until_caught_up` and before it hands its role
over.  Every event between the written checkpoint and the seen position is of other types:
a follower that starts over from the checkpoint (a crash, a new leader) reads them again
and skips them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import asyncpg
import structlog

from jobstore import checkpoint, database, errors
from jobstore.cursor import Cursor, Page
from jobstore.election import Election, LeadershipLost, Lease
from jobstore.event import Event, RecordedEvent
from jobstore.retry import RetryPolicy
from jobstore.store import NOTIFY_CHANNEL, EventStore

log = structlog.get_logger("jobtrail.follower")

Read = Callable[[Cursor], Awaitable[Page]]
"""The page of events after a cursor (``EventStore.read_after`` with a batch size)."""
Commit = Callable[[], AbstractAsyncContextManager[checkpoint.Connection]]
"""A transaction that moves the checkpoint past the page; the handler writes in it."""
Hook = Callable[[], Awaitable[None]]

TRANSIENT: tuple[type[BaseException], ...] = (
    errors.DatabaseUnavailableError,
    LeadershipLost,
    *errors.DRIVER_TRANSIENT,
)
"""Failures after which a follower waits and starts again from its checkpoint."""


class FollowerStopped(errors.JobstoreError):
    """A follower could not handle an event; it stays stopped there until it can."""

    def __init__(
        self,
        name: str,
        position: int,
        error: str,
        *,
        stream_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        where = f"position {position}"
        if event_type is not None:
            where += f" ({event_type} in stream {stream_id!r})"
        super().__init__(f"{name!r} stopped at {where}: {error}")
        self.name = name
        self.position = position
        self.error = error
        self.stream_id = stream_id
        self.event_type = event_type


def types_of(*classes: type[Event]) -> frozenset[str]:
    """The type names of event ``classes``: what a handler declares as its ``handles``."""
    return frozenset(cls.type_name for cls in classes)


class Handler(Protocol):
    """What a follower does with each batch.

    A handler may declare ``handles``, the event types it acts on (a frozenset of type
    names, :func:`types_of`): its follower hands it only events of those types.  Without
    it, the handler gets every event.
    """

    async def handle(self, batch: Sequence[RecordedEvent], commit: Commit) -> None:
        """Handle ``batch`` (the page's events of its types, in order); enter ``commit`` once.

        Writes made on the connection ``commit`` yields commit with the checkpoint.  Side
        effects outside the database go before it.  If the handler never enters it, the
        follower commits the checkpoint alone.  Raising leaves the checkpoint where it was.
        """
        ...


@dataclass(frozen=True, slots=True)
class FollowerConfig:
    """How a follower reads and waits."""

    batch_size: int = 500
    idle_poll: float = 5.0
    leader_retry: float = 1.0
    """Seconds between a standby's tries for the role, and after an interruption."""
    failure_retry: float = 30.0
    """The longest wait between tries at an event the follower stopped on."""
    lag_warning: float = 30.0
    """Seconds held back by a running transaction before the follower logs a warning."""
    linger: float = 0.0
    """Seconds a follower woken by a notification waits, counted from its last read, before
    reading again: at a steady trickle of appends it reads (and commits its checkpoint) at
    most once per ``linger`` instead of once per notification.  0 for followers whose
    delay is a job's (the relay); a backlog is read page after page without it."""
    checkpoint_every: float = 1.0
    """Seconds a follower with declared event types (``handles``) may leave its written
    checkpoint behind the position it has seen when the pages since held none of its types:
    at a trickle of other events it writes one checkpoint per this many seconds instead of
    one per page.  0 writes one per page."""
    checkpoint_quiet: float = 0.1
    """Seconds without a new event after which such a follower writes the position it has
    seen (the log went idle: its lag in the database is right again)."""


class Tail:
    """The log after a cursor, page by page, waking on NOTIFY and polling when idle."""

    FIRST_RETRY = 0.002
    """First wait (s) before looking again at events held back by a running transaction."""
    MAX_RETRY = 0.1
    """Longest wait (s) between those looks: a reader follows within it once it ends."""

    def __init__(
        self,
        read: Read,
        batch_size: int,
        idle_poll: float,
        *,
        name: str = "tail",
        lag_warning: float = 30.0,
        linger: float = 0.0,
    ) -> None:
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self.name = name
        self.lag_warning = lag_warning
        self.linger = linger
        self._last_read = 0.0
        self._read = read
        self._wake = asyncio.Event()
        self._held_back = False
        self._retry = self.FIRST_RETRY
        self._held_since: float | None = None
        self._warn_at = lag_warning

    @property
    def held_back(self) -> bool:
        """Whether the last page was short while committed events waited behind it."""
        return self._held_back

    async def listen(self, conn: asyncpg.Connection) -> None:
        """Wake on the log's notifications received by ``conn`` (a dedicated connection)."""
        await conn.add_listener(NOTIFY_CHANNEL, self._notified)

    async def read(self, cursor: Cursor) -> Page:
        """The page after ``cursor``; a notification arriving meanwhile is kept."""
        self._wake.clear()
        self._last_read = asyncio.get_running_loop().time()
        page = await self._read(cursor)
        self._note(page)
        return page

    async def wait(self, within: float | None = None) -> None:
        """Until a notification arrives (since the last read) or ``idle_poll`` s pass.

        When the last page said events are held back, only a short, growing while: the
        transaction they wait for may end without a notification.  ``within``: at most
        that many seconds.  Then, with ``linger``, until ``linger`` s have passed since
        the last read.
        """
        timeout = min(self._retry, self.idle_poll) if self._held_back else self.idle_poll
        if within is not None:
            timeout = min(timeout, within)
        if self._held_back:
            self._retry = min(self._retry * 2, self.MAX_RETRY)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        if self.linger > 0:
            rest = self._last_read + self.linger - asyncio.get_running_loop().time()
            if rest > 0:
                await asyncio.sleep(rest)

    def _note(self, page: Page) -> None:
        """Track how long this reader has been held back with nothing to read."""
        held = page.held_back and page.size < self.batch_size
        if page.size or not held:
            self._retry = self.FIRST_RETRY
        self._held_back = held
        if not held or page.size:
            if self._held_since is not None and self._warn_at > self.lag_warning:
                log.info("log reader no longer held back", reader=self.name)
            self._held_since, self._warn_at = None, self.lag_warning
            return
        now = asyncio.get_running_loop().time()
        if self._held_since is None:
            self._held_since = now
        waited = now - self._held_since
        if waited >= self._warn_at:
            log.warning(
                "log reader held back by a running transaction; keep write transactions "
                "short (see EventStore.reader_lag)",
                reader=self.name,
                held_back_seconds=round(waited, 1),
            )
            self._warn_at *= 2

    def _notified(self, *_: Any) -> None:
        self._wake.set()


class Follower:
    """Follows the log under ``name`` (its checkpoint, its role), handing batches on."""

    def __init__(
        self,
        store: EventStore,
        name: str,
        handler: Handler,
        *,
        dsn: str,
        config: FollowerConfig | None = None,
        elected: bool = True,
        read: Read | None = None,
        on_lead: Hook | None = None,
        on_idle: Hook | None = None,
        fatal: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.store = store
        self.name = name
        self.handler = handler
        self.dsn = dsn
        self.config = config or FollowerConfig()
        self.handles: frozenset[str] | None = getattr(handler, "handles", None)
        """The event types the handler acts on (None: all); the others are not decoded."""
        size = self.config.batch_size
        self.tail = Tail(
            read or (lambda after: store.read_after(after, size, self.handles)),
            size,
            self.config.idle_poll,
            name=name,
            lag_warning=self.config.lag_warning,
            linger=self.config.linger,
        )
        self.election = Election(dsn, name, self.config.leader_retry) if elected else None
        self.leading = asyncio.Event()
        """Set while this follower holds its role (or follows, when not elected)."""
        self._on_lead = on_lead
        self._on_idle = on_idle
        self._fatal = fatal
        self._passthrough = (*TRANSIENT, *fatal)
        self._failure_cleared = False
        self._saved = self._seen = Cursor(0, 0)
        """The checkpoint as last read or written, and the position handled or skipped up to
        (ahead of it only by events of other types than the handler's)."""
        self._saved_at = self._active_at = 0.0
        retry = max(self.config.failure_retry, 0.001)
        self._stopped_delays = RetryPolicy(first=min(1.0, retry), cap=retry).delays()
        """Waits between tries at an event the follower stopped on (one retry policy)."""

    async def run(self) -> None:
        """Follow the log until cancelled: lead, catch up, wait for more, start over on errors."""
        while True:
            try:
                async with self._session(listen=True) as (conn, lease):
                    await self._follow(conn, lease)
                await asyncio.sleep(self.config.leader_retry)  # stepped down: let the other in
            except self._fatal:
                raise
            except FollowerStopped:
                await asyncio.sleep(self._stopped_delays.next())
            except Exception as exc:  # the database went away, or worse: start over
                log.warning(
                    "follower interrupted; starting over from its checkpoint",
                    follower=self.name,
                    error=str(exc)[:300],
                    error_type=type(exc).__name__,
                )
                await asyncio.sleep(self.config.leader_retry)

    async def run_until_caught_up(self, target: Cursor | int | None = None) -> int:
        """Handle the log up to ``target`` (default: its head once leading); return the count.

        ``target`` is a cursor, or a position (the cursor of that event).  Events held back
        by a running transaction are waited for.  Raises FollowerStopped at an event the
        handler cannot handle.  For tests and tools.
        """
        async with self._session(listen=False):
            if target is None:
                target = await self.store.head()
            elif isinstance(target, int):
                target = await self.store.cursor_of(target)
            cursor = await self._start()
            handled = 0
            while cursor < target:
                cursor, count, covered = await self._step(cursor)
                handled += count
                if covered == 0:
                    if not self.tail.held_back:
                        break  # the rest was archived meanwhile
                    await self.tail.wait()
            await self._save()
            return handled

    @contextlib.asynccontextmanager
    async def _session(
        self, *, listen: bool
    ) -> AsyncIterator[tuple[asyncpg.Connection | None, Lease | None]]:
        """Hold the role (or, not elected, a connection to listen on) for the block."""
        if self.election is not None:
            async with self.election.lead() as lease:
                if listen:
                    await self.tail.listen(lease.conn)
                self.leading.set()
                try:
                    yield lease.conn, lease
                finally:
                    self.leading.clear()
            return
        conn = await database.connect(self.dsn) if listen else None
        try:
            if conn is not None:
                await self.tail.listen(conn)
            self.leading.set()
            yield conn, None
        finally:
            self.leading.clear()
            if conn is not None:
                await database.close_quietly(conn)

    async def _follow(self, conn: asyncpg.Connection | None, lease: Lease | None) -> None:
        """Handle batches as the log grows, until someone queues for the role."""
        cursor = await self._start()
        log.info("following the log", follower=self.name, position=cursor.position)
        if self._on_lead is not None:
            await self._on_lead()
        loop = asyncio.get_running_loop()
        next_check = loop.time()
        while True:
            if conn is not None and conn.is_closed():
                raise LeadershipLost(f"the dedicated connection of {self.name!r} closed")
            if lease is not None and loop.time() >= next_check:  # a round trip: not per batch
                next_check = loop.time() + self.config.idle_poll
                if await lease.wanted():
                    await self._save()
                    log.info("leadership handed over", follower=self.name)
                    return
            cursor, _, covered = await self._step(cursor)
            if covered:
                self._stopped_delays.reset()
            if covered < self.tail.batch_size:
                if self._on_idle is not None:
                    await self._on_idle()
                await self.tail.wait(await self._save_when_due(covered))

    async def _start(self) -> Cursor:
        self._failure_cleared = False  # another process may have recorded one meanwhile
        self._saved = self._seen = await checkpoint.read(self.store.pool, self.name)
        self._saved_at = asyncio.get_running_loop().time()
        return self._seen

    @property
    def seen(self) -> Cursor:
        """The position this follower has handled or skipped up to (its checkpoint may be
        behind it by events of other types than its handler's)."""
        return self._seen

    def _deferrable(self, now: float) -> bool:
        """Whether a page of other types may leave the written checkpoint where it is: the
        handler declared types, no recorded failure waits to be cleared, none is due."""
        return (
            self.handles is not None
            and self._failure_cleared
            and now < self._saved_at + self.config.checkpoint_every
        )

    async def _save_when_due(self, covered: int) -> float | None:
        """Write the seen position if it is due, or the log has been quiet (nothing new for
        ``checkpoint_quiet`` s); else the seconds until either (None: nothing to write)."""
        now = asyncio.get_running_loop().time()
        if covered:
            self._active_at = now
        if self._seen == self._saved:
            return None
        due = min(
            self._saved_at + self.config.checkpoint_every,
            self._active_at + self.config.checkpoint_quiet,
        )
        if due > now:
            return due - now
        await self._save()
        return None

    async def _save(self) -> None:
        """Write the seen position as the checkpoint, if it is ahead of it."""
        if self._seen != self._saved:
            await self._commit([], self._seen, lazy=False)

    async def _step(self, cursor: Cursor) -> tuple[Cursor, int, int]:
        """Handle the page after ``cursor``; return (new cursor, events handled, covered)."""
        try:
            try:
                page = await self.tail.read(cursor)
            except errors.DatabaseUnavailableError:
                raise
            except errors.JobstoreError:  # an event that cannot be decoded
                return await self._read_singly(cursor)
            if not page.size:
                return cursor, 0, 0
            end, count = await self._handle(self._mine(page.events), page.last(cursor))
            return end, count, page.size
        except errors.DRIVER_TRANSIENT as exc:
            raise errors.DatabaseUnavailableError(
                f"{self.name!r} lost the database after position {cursor.position}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _mine(self, events: Sequence[RecordedEvent]) -> Sequence[RecordedEvent]:
        """The events of the handler's types (a page read by another ``read`` may hold more)."""
        handles = self.handles
        if handles is None or all(r.type_name in handles for r in events):
            return events
        return [r for r in events if r.type_name in handles]

    async def _handle(self, batch: Sequence[RecordedEvent], end: Cursor) -> tuple[Cursor, int]:
        """Hand ``batch`` on and move the checkpoint to ``end`` (the page's)."""
        try:
            await self._commit(batch, end)
        except self._passthrough:
            raise
        except Exception:
            return await self._handle_singly(batch, end)
        return end, len(batch)

    async def _commit(
        self, batch: Sequence[RecordedEvent], end: Cursor, *, lazy: bool = True
    ) -> None:
        """Have the handler handle ``batch`` and move the checkpoint to ``end``.

        An empty batch (a page of other types only) moves the checkpoint alone; ``lazy``,
        only when it is due (``checkpoint_every``) or a recorded failure may wait to be
        cleared, and otherwise only the seen position moves.
        """
        loop = asyncio.get_running_loop()
        if lazy and not batch and self._deferrable(loop.time()):
            self._seen = end
            return
        expected = self._saved
        entered = False

        @contextlib.asynccontextmanager
        async def commit() -> AsyncIterator[checkpoint.Connection]:
            nonlocal entered
            if entered:
                raise RuntimeError(f"{self.name!r}: commit entered twice for one batch")
            entered = True
            async with self.store.pool.acquire() as conn, conn.transaction():
                if not await checkpoint.advance(conn, self.name, expected, end):
                    raise LeadershipLost(
                        f"the checkpoint of {self.name!r} is no longer at {expected}: "
                        "another process handled this batch"
                    )
                if not self._failure_cleared:
                    await checkpoint.clear_failure(conn, self.name)
                yield conn
            self._failure_cleared = True

        if batch:
            await self.handler.handle(batch, commit)
        if not entered:
            async with commit():
                pass
        self._saved = self._seen = end
        self._saved_at = loop.time()

    async def _handle_singly(
        self, batch: Sequence[RecordedEvent], end: Cursor
    ) -> tuple[Cursor, int]:
        """Handle event by event to find the one that fails; commit those before it."""
        for recorded in batch:
            try:
                await self._commit([recorded], Cursor.of(recorded))
            except self._passthrough:
                raise
            except Exception as exc:
                await self._fail(recorded.position, exc, recorded.stream_id, recorded.type_name)
        if self._seen != end:  # events of other types after the last one handled
            await self._commit([], end)
        return end, len(batch)

    async def _read_singly(self, cursor: Cursor) -> tuple[Cursor, int, int]:
        """A batch that cannot be read (decoded): handle event by event up to the bad one."""
        handled = covered = 0
        while covered < self.tail.batch_size:
            try:
                page = await self.store.read_after(cursor, 1, self.handles)
            except errors.DatabaseUnavailableError:
                raise
            except errors.JobstoreError as exc:
                row = await checkpoint.next_event(self.store.pool, cursor)
                if row is None:
                    await self._fail(cursor.position + 1, exc, None, None)
                await self._fail(row["position"], exc, row["stream_id"], row["event_type"])
            if not page.size:
                break
            cursor, count = await self._handle(self._mine(page.events), page.last(cursor))
            handled += count
            covered += page.size
        return cursor, handled, covered

    async def _fail(
        self, position: int, exc: Exception, stream_id: str | None, event_type: str | None
    ) -> NoReturn:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        self._failure_cleared = False
        log.error(
            "follower stopped on an event",
            follower=self.name,
            position=position,
            stream_id=stream_id,
            event_type=event_type,
            error=error,
        )
        await checkpoint.record_failure(
            self.store.pool, self.name, position, error, stream_id=stream_id, event_type=event_type
        )
        raise FollowerStopped(
            self.name, position, error, stream_id=stream_id, event_type=event_type
        ) from exc
