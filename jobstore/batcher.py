"""Group commit for single-stream appends made concurrently in one process, and the same
coalescing for reads of jobs' streams.

Each commit waits for its WAL flush, so one transaction per append would cap a process at
one append per flush per connection.  The batcher queues the appends that arrive while a
flush is running and commits them together in the next one; a stream that fails its
version check is reported to its own caller only.  A lone caller is flushed at once: no
timer, no added latency.  Up to ``max_flushes`` batches are in flight at once (appends no
longer serialise in the database, see ``store.py``): while one waits for its commit, the
next is already on its way, so a process is not idle for a round trip per batch.

Reads are coalesced the same way (``EventStore.read_job``): the deliveries that arrive while
a read is out read their jobs together in the next statement, so a flood costs a statement
(a round trip, a send, a pooled connection) per batch instead of per delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
RunBatch = Callable[[Sequence[Any]], Awaitable[list[T | BaseException]]]
"""Runs a batch of requests (each with a ``stream_id``, at most one per stream) in one
statement; one outcome per request, in order: its result or its own error."""


class AppendBatcher(Generic[T]):
    """Coalesces concurrent single-stream requests (appends, reads) into shared statements."""

    def __init__(
        self, run_batch: RunBatch[T], *, max_batch: int = 256, max_flushes: int = 2
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_flushes = max_flushes
        self._pending: list[tuple[Any, asyncio.Future[T]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def submit(self, request: Any) -> T:
        """Queue one stream's request and wait for its outcome (or its error)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        # A flusher whose loop has ended is done at once, but leaves the set only when
        # asyncio runs its done-callbacks, later: counted as running, it would leave this
        # request queued with nobody to flush it until another request came.
        running = sum(not f.done() for f in self._flushers)
        if running < self._max_flushes:
            flusher = asyncio.create_task(self._flush_all())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        return await future

    async def _flush_all(self) -> None:
        while self._pending:
            batch = self._take_batch()
            live = [(req, fut) for req, fut in batch if not fut.done()]
            if not live:
                continue
            try:
                outcomes = await self._run_batch([req for req, _ in live])
            except BaseException as exc:  # handed to every caller of this batch
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, fut), outcome in zip(live, outcomes, strict=True):
                if fut.done():
                    continue
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)

    def _take_batch(self) -> list[tuple[Any, asyncio.Future[T]]]:
        """The oldest requests, at most one per stream (a later one waits for the next)."""
        batch: list[tuple[Any, asyncio.Future[T]]] = []
        rest: list[tuple[Any, asyncio.Future[T]]] = []
        streams: set[str] = set()
        for item in self._pending:
            stream_id = item[0].stream_id
            if len(batch) < self._max_batch and stream_id not in streams:
                streams.add(stream_id)
                batch.append(item)
            else:
                rest.append(item)
        self._pending = rest
        return batch
