"""A whole jobtrail host for acceptance tests: qstash_local, the aiohttp host, the relay.

Deliveries travel for real: relay → qstash_local (official SDK) → signed HTTP → host.
A test job type ``test-job`` does what its payload says, and records every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pydantic
from aiohttp import web

import jobstore
import projections
import qstash_local
from jobstore import BaseJob, JobValidationError, NonRetryableJobError
from qstash_local import signature
from workers import HOST, HostOptions, make_app
from workers.sweeper import SweeperConfig

TEST_CONFIG = qstash_local.Config(retry_delay_scale=0.001, scheduler_tick_s=0.01)
TEST_PATH = "/jobs/test"


class TestPayload(pydantic.BaseModel):
    """What the test handler should do."""

    __test__ = False
    fail_times: int = 0
    fail_dispatches: int = 0
    sleep: float = 0.0
    raise_kind: str | None = None  # "nonretryable" | "validation"
    block: bool = False
    retry_later: float = 0.0  # raise RetryLater(seconds) on the first attempt
    beats: int = 0  # call job.heartbeat() this many times, every beat_every seconds
    beat_every: float = 0.0
    tag: str = ""


@dataclasses.dataclass
class Call:
    """One run of the test handler."""

    job_id: str
    dispatch: int
    attempt: int
    idempotency_key: str
    payload: TestPayload


class TestHandler:
    """The handler of ``test-job``; tests read ``calls`` and release ``gate``."""

    __test__ = False

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.heartbeats: list[bool] = []

    async def __call__(self, payload: TestPayload, job: BaseJob) -> dict[str, Any]:
        self.calls.append(Call(job.job_id, job.dispatch, job.attempt, job.idempotency_key, payload))
        self.started.set()
        for _ in range(payload.beats):
            await asyncio.sleep(payload.beat_every)
            self.heartbeats.append(await job.heartbeat())
        if payload.block:
            await self.gate.wait()
        if payload.sleep:
            await asyncio.sleep(payload.sleep)
        if payload.retry_later and job.attempt == 1:
            raise jobstore.RetryLater(payload.retry_later)
        if payload.raise_kind == "nonretryable":
            raise NonRetryableJobError("the payload can never work")
        if payload.raise_kind == "validation":
            raise JobValidationError("bad input", ["tag: must not be empty"])
        if job.dispatch <= payload.fail_dispatches:
            raise RuntimeError(f"planned failure of dispatch {job.dispatch}")
        if job.attempt <= payload.fail_times:
            raise RuntimeError(f"planned failure on attempt {job.attempt}")
        return {"tag": payload.tag, "attempt": job.attempt}


def dispatched(
    job_id: str, job_type: str = "test-job", **options: Any
) -> jobstore.job_events.JobDispatched:
    """A first ``JobDispatched`` of ``job_id`` with ``options``, written by hand in tests."""
    return jobstore.job_events.JobDispatched(
        job_id=job_id,
        dispatch=1,
        job_type=job_type,
        payload={},
        source="api",
        options={"endpoint": TEST_PATH} | options,
    )


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Host:
    """A running host with its QStash and its test handler."""

    url: str
    qstash: qstash_local.Server | None
    app: web.Application
    handler: TestHandler
    settings: jobstore.Settings

    @property
    def ctx(self) -> Any:
        """The host's context (store, dispatcher, registry, …)."""
        return self.app[HOST]

    @property
    def dispatcher(self) -> jobstore.Dispatcher:
        """The host's dispatcher."""
        return self.ctx.dispatcher  # type: ignore[no-any-return]

    async def enqueue(self, retries: int | None = None, **payload: Any) -> str:
        """Enqueue a ``test-job`` with ``payload``."""
        options = {"retries": retries} if retries is not None else None
        return await self.dispatcher.enqueue("test-job", payload, None, options)

    async def events(self, job_id: str) -> list[jobstore.Event]:
        """The job's events, in order."""
        return [r.event for r in await self.ctx.store.read_stream(f"job-{job_id}")]

    async def types(self, job_id: str) -> list[str]:
        """The job's event types, in order."""
        return [e.type_name for e in await self.events(job_id)]

    async def wait_status(self, job_id: str, *statuses: str, within: float = 15.0) -> Any:
        """Wait until the job has one of ``statuses``; return its execution record."""
        deadline = time.monotonic() + within
        while True:
            execution = await self.dispatcher.get_job_execution_by_job_id(job_id)
            if execution is not None and execution.status in statuses:
                return execution
            if time.monotonic() > deadline:
                got = None if execution is None else execution.status
                raise AssertionError(
                    f"job {job_id} is {got}, not {statuses}; events: {await self.types(job_id)}"
                )
            await asyncio.sleep(0.02)

    def sign(
        self,
        path: str,
        body: bytes,
        *,
        key: str | None = None,
        now: int | None = None,
        url: str | None = None,
    ) -> str:
        """An ``Upstash-Signature`` for ``body`` at ``path`` (or ``url``)."""
        return signature.sign(
            key=key or self.settings.qstash_current_signing_key.get_secret_value(),
            url=url or self.url + path,
            body_sha=signature.body_hash(body),
            now=int(time.time()) if now is None else now,
            jti=signature.new_jti(),
        )

    async def post(
        self,
        path: str,
        body: bytes | dict[str, Any],
        *,
        signed: bool = True,
        headers: dict[str, str] | None = None,
        **sign: Any,
    ) -> tuple[int, Any, Any]:
        """POST to the host as QStash would; returns (status, JSON body, headers)."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if signed:
            all_headers["Upstash-Signature"] = self.sign(path, raw, **sign)
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, data=io.BytesIO(raw), headers=all_headers) as response,
        ):
            text = await response.text()
            data = orjson.loads(text) if text.startswith("{") else text
            return response.status, data, response.headers


def test_registry(handler: TestHandler, settings: jobstore.Settings) -> jobstore.JobRegistry:
    """The built-in types plus ``test-job`` (retries 2, timeout 1 s)."""
    from workers import builtin

    registry = builtin.registry_with_handlers(settings)
    registry.register(
        jobstore.JobConfig(type="test-job", endpoint=TEST_PATH, retries=2, timeout=1.0),
        TestPayload,
        handler,
    )
    return registry


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[None]:
    """``app`` served on 127.0.0.1:``port`` for the block (a test's stand-in server)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running_host(
    db_dsn: str,
    *,
    config: qstash_local.Config = TEST_CONFIG,
    relay: bool = True,
    notifier: bool = True,
    qstash_url: str | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[Host]:
    """qstash_local and a host (with its relay) on free loopback ports, stopped afterwards.

    With ``qstash_url`` the host uses that QStash instead of starting its own.
    """
    async with contextlib.AsyncExitStack() as stack:
        qstash = None
        if qstash_url is None:
            qstash = await stack.enter_async_context(
                qstash_local.serve(config, host="127.0.0.1", port=0)
            )
            qstash_url = qstash.url
        yield await stack.enter_async_context(
            _host(db_dsn, qstash, qstash_url, config.token, relay, settings_overrides, notifier)
        )


@contextlib.asynccontextmanager
async def _host(
    db_dsn: str,
    qstash: qstash_local.Server | None,
    qstash_url: str,
    token: str,
    relay: bool,
    overrides: dict[str, Any],
    notifier: bool = True,
    projections: bool = True,
) -> AsyncIterator[Host]:
    port = free_port()
    settings = jobstore.Settings(
        database_url=db_dsn,
        public_url=f"http://127.0.0.1:{port}",
        qstash_url=qstash_url,
        qstash_token=token,
        webhook_allow_private_targets=True,
        webhook_allowed_ports="*",
        lease_grace_seconds=0.5,
        **overrides,
    )
    handler = TestHandler()
    relay_config = jobstore.RelayConfig(
        public_url=settings.public_url, idle_poll=0.2, max_backoff=0.5
    )
    app = make_app(
        settings,
        registry=test_registry(handler, settings),
        dsn=db_dsn,
        options=HostOptions(
            relay=relay,
            notifier=notifier,
            sweeper=False,
            relay_config=relay_config,
            sweeper_config=SweeperConfig(min_age=0),
        ),
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Host(settings.public_url, qstash, app, handler, settings)
    finally:
        handler.gate.set()
        await runner.cleanup()


async def relay_caught_up(host: Host, deadline: float) -> None:
    """Wait until the relay has handled the whole log (schedules synced: none pending)."""
    while True:
        (relay,) = await projections.projection_status(host.ctx.store.pool, ["relay"])
        if relay.lag == 0:
            return
        assert time.monotonic() < deadline, f"the relay is {relay.lag} events behind"
        await asyncio.sleep(0.02)
