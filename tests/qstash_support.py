"""Fixtures for qstash_local tests: the server, a signature-checking sink, SDK clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
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


CONTRACT_ENV = "JOBTRAIL_CONTRACT_QSTASH"
CONTRACT_SKIP = (
    f"contract run against the real QStash is opt-in: set {CONTRACT_ENV}=1 with QSTASH_TOKEN "
    "(and QSTASH_URL for a regional endpoint) to run it"
)


@dataclasses.dataclass
class Target:
    """A QStash to check behaviour against: qstash_local, or the real service (opt-in).

    Every call a test makes is scoped by labels unique to the run (``label``), so the
    contract run only ever touches what it created itself on a real account.
    """

    name: str
    base_url: str
    token: str
    client: AsyncQStash
    http: aiohttp.ClientSession
    failing_url: Callable[[str, int], str]
    within: float
    run: str = dataclasses.field(default_factory=lambda: "jt" + uuid.uuid4().hex[:12])
    harness: Harness | None = None
    labels: set[str] = dataclasses.field(default_factory=set)

    @property
    def local(self) -> bool:
        """Whether this is qstash_local (unscoped destructive calls are safe only there)."""
        return self.harness is not None

    def label(self, name: str) -> str:
        """A label unique to this run (remembered for cleanup)."""
        label = f"{self.run}_{name}"
        self.labels.add(label)
        return label

    def parked_url(self, host: str = "example.com", path: str = "p") -> str:
        """A destination for a message that waits an hour (never delivered by a test)."""
        return f"https://{host}/{self.run}/{path}"

    async def raw(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None = None,
        json_body: Any = None,
    ) -> tuple[int, Any]:
        """Call the REST API directly and return ``(status, parsed JSON or text)``."""
        async with self.http.request(method, path, params=params or [], json=json_body) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text) if text else None
            except json.JSONDecodeError:
                return r.status, text

    async def park(self, label: str, url: str | None = None, **options: Any) -> str:
        """Publish a message delayed by an hour; return its id."""
        res = await self.client.message.publish(
            url=url or self.parked_url(), body="parked", delay="1h", label=label, **options
        )
        return res.message_id  # type: ignore[union-attr]

    async def dead_letter(
        self,
        label: str,
        n: int,
        path: str = "fail",
        status: int = 500,
        body: str | None = "doomed",
        **options: Any,
    ) -> list[str]:
        """Publish ``n`` messages that fail once and land in the DLQ; return the label's dlqIds."""
        before = len(await self.dlq_ids(label))
        for _ in range(n):
            await self.client.message.publish(
                url=self.failing_url(path, status), body=body, retries=0, label=label, **options
            )
        return await self.wait_dlq(label, before + n)

    async def dlq_ids(self, label: str) -> list[str]:
        """The dlqIds carrying ``label``, read through the SDK (every page)."""
        ids: list[str] = []
        cursor = None
        while True:
            page = await self.client.dlq.list(cursor=cursor, filter={"label": label})
            ids += [m.dlq_id for m in page.messages]
            if page.cursor is None:
                return ids
            cursor = page.cursor

    async def wait_dlq(self, label: str, n: int) -> list[str]:
        """Wait until exactly ``n`` DLQ entries carry ``label``; return their ids."""
        deadline = time.monotonic() + self.within
        while True:
            ids = await self.dlq_ids(label)
            if len(ids) == n:
                return ids
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(ids)} DLQ entries labelled {label}, expected {n}")
            await asyncio.sleep(0.02 if self.local else 1.0)

    async def events_of(self, params: list[tuple[str, str]]) -> set[str]:
        """The message ids of the log rows ``GET /v2/events`` returns for ``params``."""
        status, body = await self.raw("GET", "/v2/events", params)
        assert status == 200, body
        return {e["messageId"] for e in body["events"]}

    async def cleanup(self) -> None:
        """Cancel what the run parked and delete what it dead-lettered (best effort)."""
        for label in sorted(self.labels):
            await self.raw("DELETE", "/v2/messages", [("label", label)])
            for _ in range(100):
                status, body = await self.raw("DELETE", "/v2/dlq", [("label", label)])
                if status != 200 or not body.get("cursor"):
                    break


def _real_target_settings() -> tuple[str, str]:
    if os.environ.get(CONTRACT_ENV) != "1":
        pytest.skip(CONTRACT_SKIP)
    token = os.environ.get("QSTASH_TOKEN")
    if not token:
        pytest.fail(f"{CONTRACT_ENV}=1 needs QSTASH_TOKEN (an Upstash QStash token)")
    return os.environ.get("QSTASH_URL", "https://qstash.upstash.io").rstrip("/"), token


def _failing_sink(h: Harness) -> Callable[[str, int], str]:
    def failing_url(path: str, status: int) -> str:
        h.sink.respond("/" + path, lambda d: web.Response(status=status, text="boom"))
        return h.sink.url("/" + path)

    return failing_url


@contextlib.asynccontextmanager
async def _session(base_url: str, token: str) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url=base_url, headers=headers) as session:
        yield session


@contextlib.asynccontextmanager
async def local_target() -> AsyncIterator[Target]:
    """A :class:`Target` on a fresh qstash_local with a sink."""
    async with running() as h, _session(h.server.url, FAST.token) as http:
        yield Target(
            "local", h.server.url, FAST.token, h.client, http, _failing_sink(h), 5.0, harness=h
        )


@contextlib.asynccontextmanager
async def real_target() -> AsyncIterator[Target]:
    """A :class:`Target` on the real QStash (``QSTASH_URL``/``QSTASH_TOKEN``); cleans up after."""
    base_url, token = _real_target_settings()
    # A public service that answers any status asked of it (QStash cannot reach this machine).
    httpbin = os.environ.get("JOBTRAIL_CONTRACT_HTTPBIN", "https://httpbin.org").rstrip("/")
    client = AsyncQStash(token, base_url=base_url)
    try:
        async with _session(base_url, token) as http:
            target = Target(
                "real",
                base_url,
                token,
                client,
                http,
                lambda p, s: f"{httpbin}/status/{s}?p={p}",
                120.0,
            )
            try:
                yield target
            finally:
                await target.cleanup()
    finally:
        await client.http._client.aclose()


@pytest.fixture(params=["local", "real"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The QStash under test: qstash_local always, the real one when the contract run is on."""
    factory = local_target if request.param == "local" else real_target
    async with factory() as t:
        yield t
