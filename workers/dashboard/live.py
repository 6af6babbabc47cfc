"""Live updates: server-sent events, woken by the log's NOTIFY, shared and coalesced.

One listening connection per process (the :class:`Hub`), however many browsers watch:
after a notification it reads the log's head once and ticks every open stream, then
waits ``INTERVAL`` before it looks again, so a browser gets at most a few ticks a second
however fast the log grows.  A tick tells the page to fetch its live fragments again (the
views trail the log a little, so one more tick follows once things are quiet).  Without
JavaScript the pages simply don't move.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import structlog
from aiohttp import web

import jobstore
from jobstore import START, Cursor, Page
from workers.context import HOST
from workers.dashboard import context

log = structlog.get_logger("jobtrail.dashboard")
INTERVAL: Final = 0.5
"""Seconds between two ticks at most: the coalescing window."""
IDLE_POLL: Final = 1.0
KEEPALIVE: Final = 15.0


class Hub:
    """The process's one listener of the log, ticking every browser's event stream."""

    def __init__(self, dsn: str | None, interval: float = INTERVAL) -> None:
        self.dsn = dsn
        self.interval = interval
        self.position = 0
        self.ticks = 0
        self.closing = False
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self, store: jobstore.EventStore, dsn: str) -> None:
        """Start listening (once; later calls do nothing)."""
        if self._task is None and not self.closing:
            self._task = asyncio.create_task(self._run(store, dsn), name="dashboard-hub")

    @property
    def listening(self) -> bool:
        """Whether the listener runs."""
        return self._task is not None and not self._task.done()

    async def _run(self, store: jobstore.EventStore, dsn: str) -> None:
        while True:
            try:
                await self._follow(store, dsn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dashboard listener lost the database; retrying", error=str(exc))
                await asyncio.sleep(1.0)

    async def _follow(self, store: jobstore.EventStore, dsn: str) -> None:
        async def nothing(_cursor: Cursor) -> Page:
            return Page([])

        tail = jobstore.follower.Tail(nothing, 1, IDLE_POLL, name="dashboard")
        conn = await jobstore.connect(dsn)
        try:
            await tail.listen(conn)
            self.position = await store.last_position()
            settle = False
            while True:
                await tail.read(START)
                head = await store.last_position()
                if head != self.position or settle:
                    settle = head != self.position
                    await self._publish(head)
                await asyncio.sleep(self.interval)
                await tail.wait()
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def _publish(self, position: int) -> None:
        async with self._changed:
            self.position = position
            self.ticks += 1
            self._changed.notify_all()

    async def next_tick(self, seen: int, within: float) -> int:
        """The tick count once it passes ``seen`` (or after ``within`` s, unchanged)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.ticks != seen or self.closing), within
                )
            return self.ticks

    async def close(self) -> None:
        """End every open stream (the host is shutting down)."""
        self.closing = True
        async with self._changed:
            self._changed.notify_all()

    async def stop(self) -> None:
        """Stop listening."""
        await self.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


HUB: Final = web.AppKey("jobtrail_dashboard_hub", Hub)


def add_routes(app: web.Application) -> None:
    """Register the event stream."""
    app.router.add_get("/live", stream, name="live")
    app.on_shutdown.append(_closing)


async def _closing(app: web.Application) -> None:
    await app[HUB].close()


def _start(request: web.Request, hub: Hub) -> None:
    dsn = hub.dsn
    host = request.config_dict.get(HOST)
    if dsn is None and host is not None:
        dsn = host.dsn
    if dsn is not None:
        hub.start(context.dispatcher(request).store, dsn)


async def stream(request: web.Request) -> web.StreamResponse:
    """GET /live: ``tick`` events (data: the log's head position) while the page is open."""
    hub = request.app[HUB]
    _start(request, hub)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    seen = hub.ticks
    with contextlib.suppress(ConnectionResetError):
        await response.write(b"retry: 3000\n\n")
        while True:
            tick = await hub.next_tick(seen, KEEPALIVE)
            if _closed(hub):
                break
            if tick == seen:
                await response.write(b": keep-alive\n\n")
                continue
            seen = tick
            await response.write(f"event: tick\ndata: {hub.position}\n\n".encode())
    return response


def _closed(hub: Hub) -> bool:
    return hub.closing
