"""Reading the log once for several projections that follow it side by side.

Projections led by one runner usually sit at the same cursor, so they ask for the same
batch.  A batch is read (and decoded) once: a read still in flight is shared, and a full
batch is kept for a while.  Sharing never skips anything: a batch is the events right
after a cursor in the followers' order, all below the horizon
(``EventStore.read_after``), so nothing can ever join it and a kept full batch is exactly
what a new read would return.  Short batches (the head of the log) are shared only while
in flight, so a projection at the head always sees new events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

from jobstore import Cursor, EventStore, Page

KEPT = 8


class LogReader:
    """Batches of ``batch_size`` events after a position, read once however many ask."""

    def __init__(self, store: EventStore, batch_size: int) -> None:
        self.store = store
        self.batch_size = batch_size
        self._reads: OrderedDict[Cursor, asyncio.Future[Page]] = OrderedDict()

    async def after(self, cursor: Cursor) -> Page:
        """The next page after ``cursor`` (raises what ``EventStore.read_after`` raises)."""
        future = self._reads.get(cursor)
        if future is not None and future.done() and not _kept(future, self.batch_size):
            future = None  # a short batch just read: its done-callback has not dropped it yet
        if future is None:
            future = asyncio.ensure_future(self.store.read_after(cursor, self.batch_size))
            future.add_done_callback(lambda done: self._settle(cursor, done))
            self._reads[cursor] = future
            while len(self._reads) > KEPT:
                self._reads.popitem(last=False)
        return await asyncio.shield(future)

    def _settle(self, cursor: Cursor, done: asyncio.Future[Page]) -> None:
        """Keep a full batch; forget a short one, a failure or a cancelled read."""
        if not _kept(done, self.batch_size) and self._reads.get(cursor) is done:
            del self._reads[cursor]

    def close(self) -> None:
        """Cancel reads nobody waits for any more."""
        for future in self._reads.values():
            future.cancel()
            with contextlib.suppress(BaseException):
                future.exception()
        self._reads.clear()


def _kept(read: asyncio.Future[Page], batch_size: int) -> bool:
    """Whether a finished read may be handed to later readers: a full batch only (a short
    one is the head of the log then, and more may have come since)."""
    if read.cancelled() or read.exception() is not None:
        return False
    return read.result().size == batch_size
