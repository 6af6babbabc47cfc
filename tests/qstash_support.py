"""Fixtures for qstash_local tests: the server, a signature-checking sink, SDK clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from qstash import AsyncQStash, QStash, Receiver
from qstash.errors import SignatureError

import qstash_local

FAST = qstash_local.Config(retry_delay_scale=0.0001, scheduler_tick_s=0.01)
Responder = Callable[["Delivery"], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One request the sink received, already signature-checked."""

    path: str
    url: str
    method: str
    headers: CIMultiDictProxy[str]
    body: bytes
    at: float

    @property
    def retried(self) -> int:
        """The ``Upstash-Retried`` header as an int."""
        return int(self.headers["Upstash-Retried"])


class Sink:
    """An aiohttp server that verifies every delivery with ``qstash.Receiver``."""

    def __init__(self, keys: Callable[[], tuple[str, str]]) -> None:
        self.keys = keys
        self.deliveries: list[Delivery] = []
        self.signature_errors: list[str] = []
        self.base = ""
        self._responders: dict[str, Responder] = {}
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this sink."""
        return self.base + path

    def respond(self, path: str, responder: Responder) -> None:
        """Answer requests to ``path`` with ``responder`` (default: 200 ``ok``)."""
        self._responders[path] = responder

    def at(self, path: str) -> list[Delivery]:
        """Deliveries received at ``path`` so far, in arrival order."""
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        url = self.base + request.raw_path
        current, next_ = self.keys()
        try:
            Receiver(current, next_).verify(
                signature=request.headers.get("Upstash-Signature", ""), body=body.decode(), url=url
            )
        except (SignatureError, UnicodeDecodeError) as exc:
            self.signature_errors.append(f"{url}: {exc}")
            return web.Response(status=500, text="bad signature")
        delivery = Delivery(
            request.path, url, request.method, request.headers, body, time.monotonic()
        )
        with self._lock:
            self.deliveries.append(delivery)
        responder = self._responders.get(request.path)
        if responder is None:
            return web.Response(text="ok")
        result = responder(delivery)
        return await result if isinstance(result, Awaitable) else result

    @property
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


async def start_sink(sink: Sink) -> web.AppRunner:
    """Serve ``sink`` on a free loopback port and set its base URL."""
    runner = web.AppRunner(sink.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    sink.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner


async def eventually(
    predicate: Callable[[], Any], *, within: float = 5.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)


class FakeClock:
    """A settable clock for the scheduler (unix seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Harness:
    """A running qstash_local with a sink and an async SDK client pointed at it."""

    server: qstash_local.Server
    sink: Sink
    client: AsyncQStash

    @property
    def state(self) -> Any:
        """The server's in-memory state."""
        return self.server.state

    async def events(self, message_id: str) -> list[str]:
        """The states logged for one message, oldest first, read through the SDK."""
        logs = await self.client.log.list(filter={"message_id": message_id})
        return [log.state.value for log in reversed(logs.logs)]

    async def wait_state(self, message_id: str, state: str, within: float = 5.0) -> list[str]:
        """Wait until the message's log contains ``state``; return the log."""
        deadline = time.monotonic() + within
        while True:
            states = await self.events(message_id)
            if state in states:
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"{message_id} never reached {state}; log: {states}")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(config: qstash_local.Config = FAST) -> AsyncIterator[Harness]:
    """Start a server, a sink and an async client; stop them all afterwards."""
    async with qstash_local.serve(config, host="127.0.0.1", port=0) as server:
        state = server.state
        sink = Sink(lambda: (state.current_key, state.next_key))
        runner = await start_sink(sink)
        client = AsyncQStash(config.token, base_url=server.url, retry=False)
        try:
            yield Harness(server, sink, client)
        finally:
            await client.http._client.aclose()
            await runner.cleanup()
    assert sink.signature_errors == [], sink.signature_errors


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """A fast-retrying server (retry delays scaled by 0.0001) with a sink and a client."""
    async with running() as h:
        yield h


@dataclasses.dataclass
class ThreadedHarness:
    """A server and sink running on their own event loop in a thread, with a sync client."""

    url: str
    sink: Sink
    client: QStash


@pytest.fixture
def threaded() -> Iterator[ThreadedHarness]:
    """Run qstash_local and a sink in a background thread for the sync ``QStash`` client."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = (asyncio.get_running_loop(), stop)
        async with running() as h:
            box["harness"] = h
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "qstash_local did not start"
    h: Harness = box["harness"]
    client = QStash(FAST.token, base_url=h.server.url, retry=False)
    try:
        yield ThreadedHarness(h.server.url, h.sink, client)
    finally:
        client.http._client.close()
        loop, stop = box["stop"]
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def wait_sync(predicate: Callable[[], Any], within: float = 5.0, what: str = "condition") -> Any:
    """Blocking twin of ``eventually`` for sync tests (the server runs in another thread)."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.005)
