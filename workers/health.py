"""``/healthz`` (alive), ``/readyz`` (database reachable, schema up to date), ``/metrics``."""

from __future__ import annotations

from aiohttp import web

import jobstore
import projections
from workers.context import HOST


async def healthz(_request: web.Request) -> web.Response:
    """The process is up and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when PostgreSQL answers and every migration is applied."""
    ctx = request.app[HOST]
    try:
        states = await jobstore.status(ctx.dsn)
    except jobstore.JobstoreError as exc:
        return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
    pending = [f"{s.version:04d}_{s.name}" for s in states if s.applied_at is None]
    if pending:
        return web.json_response({"status": "migrations pending", "pending": pending}, status=503)
    return web.json_response({"status": "ready", "accepting": ctx.accepting})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics, with the relay backlog read now.

    Open without a token only on a host listening on loopback (or JOBTRAIL_PUBLIC_METRICS);
    otherwise a token with the ``read`` scope.
    """
    refused = _refused(request)
    if refused is not None:
        return refused
    ctx = request.app[HOST]
    try:
        last = await ctx.store.last_position()
        relay_at = await ctx.store.checkpoint("relay")
        ctx.metrics.relay_backlog.set(max(0, last - relay_at))
        for status in await projections.projection_status(ctx.store.pool):
            ctx.metrics.projection_lag.labels(status.name).set(status.lag)
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
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
