"""``/healthz`` (alive), ``/readyz`` (database reachable, schema up to date, background
tasks up), ``/metrics``.

``/readyz`` borrows a connection from the host's pool (never opens one of its own), gives
up after a timeout, and caches its answer briefly: however many probes arrive at once, one
check runs and the database sees at most one more session than the pool already holds.
Failure bodies are generic; the cause goes to the log.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from aiohttp import web

import projections
from jobstore import audit, migrations, query
from workers import retention_metrics
from workers.context import HOST, HostContext
from workers.supervisor import TaskState

log = structlog.get_logger("jobtrail.health")
_Q = query.load("workers", "health.sql")
READY_CACHE_SECONDS: Final = 1.0
READY_TIMEOUT_SECONDS: Final = 2.0


async def healthz(_request: web.Request) -> web.Response:
    """The process is up and serving."""
    return web.json_response({"status": "ok"})


@dataclass
class Readiness:
    """The last readiness answer, and the lock that lets one check run at a time."""

    expected: dict[int, str]
    answer: tuple[int, dict[str, Any]] | None = None
    checked_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def check(self, ctx: HostContext) -> tuple[int, dict[str, Any]]:
        """The cached answer if fresh, else a new one (concurrent callers share it)."""
        async with self.lock:
            if self.answer is None or time.monotonic() - self.checked_at > READY_CACHE_SECONDS:
                self.answer = await self._ask(ctx)
                self.checked_at = time.monotonic()
            return self.answer

    async def _ask(self, ctx: HostContext) -> tuple[int, dict[str, Any]]:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                async with ctx.store.pool.acquire() as conn:
                    rows = await conn.fetch(_Q["applied_migrations"])
        except Exception as exc:  # any failure is "not ready"; the detail is for the log
            log.warning("readiness check failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return 503, {"status": "unavailable", "error": "database unavailable"}
        applied = {row["version"] for row in rows}
        pending = [f"{v:04d}_{n}" for v, n in sorted(self.expected.items()) if v not in applied]
        if pending:
            return 503, {"status": "migrations pending", "pending": pending}
        return 200, {"status": "ready"}


READINESS: Final = web.AppKey("jobtrail_readiness", Readiness)


async def readyz(request: web.Request) -> web.Response:
    """Ready when PostgreSQL answers, every migration is applied and no required
    background task is down (a task waiting to be restarted after a failure).  A task
    that is not required (audit anchoring) and is down is listed under ``degraded``: the
    host still serves."""
    ctx = request.app[HOST]
    status, body = await request.app[READINESS].check(ctx)
    down = [] if ctx.supervisor is None else ctx.supervisor.down(required=True)
    if status == 200 and down:
        status = 503
        body = {"status": "background task down", "tasks": [_task(s) for s in down]}
    if status == 200:
        body = {**body, "accepting": ctx.accepting}
        degraded = [] if ctx.supervisor is None else ctx.supervisor.down(required=False)
        if degraded:
            body["degraded"] = [_task(s) for s in degraded]
    return web.json_response(body, status=status)


def _task(state: TaskState) -> dict[str, Any]:
    """A task's state for /readyz (without its detail)."""
    return {k: v for k, v in state.to_json().items() if k != "detail"}


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics, with the relay backlog and the log readers' lag read now.

    Open without a token only on a host listening on loopback (or JOBTRAIL_PUBLIC_METRICS);
    otherwise a token with the ``read`` scope.
    """
    refused = _refused(request)
    if refused is not None:
        return refused
    ctx = request.app[HOST]
    ctx.metrics.observe_qstash(ctx.qstash_limits)
    ctx.metrics.observe_database_waits(ctx.store.runner.waits)
    try:
        last = await ctx.store.last_position()
        relay_at = await ctx.store.checkpoint("relay")
        ctx.metrics.relay_backlog.set(max(0, last - relay_at))
        for status in await projections.projection_status(ctx.store.pool):
            ctx.metrics.projection_lag.labels(status.name).set(status.lag)
        stats = await projections.get_job_stats(ctx.store.pool)
        for job_type, per_type in stats.by_type.items():
            ctx.metrics.pending.labels(job_type).set(per_type.pending.count)
            ctx.metrics.waiting_on_limit.labels(job_type).set(per_type.pending.waiting_on_limit)
            ctx.metrics.oldest_pending.labels(job_type).set(
                per_type.pending.oldest_age_seconds or 0
            )
        lag = await ctx.store.reader_lag()
        ctx.metrics.reader_held_back_events.set(lag.held_back_events)
        ctx.metrics.reader_held_back_seconds.set(lag.held_back_seconds)
        ctx.metrics.observe_audit(await audit.lag(ctx.store.pool))
        await retention_metrics.observe(ctx)
    except Exception:  # metrics must answer even when the database does not
        pass
    return web.Response(body=ctx.metrics.render(), content_type="text/plain", charset="utf-8")


def _refused(request: web.Request) -> web.Response | None:
    """A 401/403 answer unless the request may read the metrics."""
    access = request.app.get(projections.API_ACCESS)
    if access is None:
        return _denied(401, "a bearer token is needed; this host has none configured")
    found = access.probe_token(request.headers.get("Authorization", ""))
    if found is True:
        return None
    if not isinstance(found, projections.ApiToken):
        return _denied(401, "missing or wrong bearer token")
    if not found.allows(projections.Scope.READ):
        return _denied(403, f"this needs a token with the 'read' scope; {found.name!r} lacks it")
    return None


def _denied(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="jobtrail"'} if status == 401 else {}
    return web.json_response({"error": message}, status=status, headers=headers)


def add_routes(app: web.Application) -> None:
    """Mount the health and metrics routes."""
    app.router.add_get("/healthz", healthz)
    app[READINESS] = Readiness({m.version: m.name for m in migrations.discover()})
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
