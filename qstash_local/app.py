"""The aiohttp application: routes, the JSON error and auth middlewares, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from qstash_local.api import (
    dlq,
    event,
    flow_control,
    message,
    publish,
    queue,
    schedule,
    signing_key,
    url_group,
)
from qstash_local.api.context import CONFIG, DISPATCHER, LIMITER, PUBLISHER, STATE, error_response
from qstash_local.config import Config
from qstash_local.dispatcher import Dispatcher
from qstash_local.error import QStashLocalError, Unauthorized
from qstash_local.limits import Limiter
from qstash_local.publisher import Publisher
from qstash_local.scheduler import Scheduler
from qstash_local.state import State

log = logging.getLogger(__name__)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as ``{"error": ...}``; never a traceback."""
    try:
        return await handler(request)
    except QStashLocalError as exc:
        response = error_response(exc.status, exc.message)
        response.headers.update(getattr(exc, "headers", {}))
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.text or exc.reason)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return error_response(500, f"internal error serving {request.method} {request.path}")


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require the token as ``Authorization: Bearer`` or ``?qstash_token=`` (401 otherwise).

    UNVERIFIED: QStash's exact 401 text. One tenant only: the dev binary's test users are
    not modelled (the Python SDK needs one; how strictly the binary isolates them is unknown).
    """
    expected = request.app[CONFIG].token
    header = request.headers.get("Authorization", "")
    given = header[7:] if header[:7].lower() == "bearer " else request.query.get("qstash_token", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized()
    return await handler(request)


def _routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v2/publish/{tail:.+}", publish.publish)
    r.add_post("/v2/enqueue/{tail:.+}", publish.enqueue)
    r.add_post("/v2/batch", publish.batch)
    r.add_get("/v2/messages/{id}", message.get)
    r.add_delete("/v2/messages/{id}", message.cancel)
    r.add_delete("/v2/messages", message.cancel_many)
    r.add_get("/v2/events", event.events)
    r.add_get("/v2/logs", event.logs)
    r.add_get("/v2/dlq", dlq.list_)
    r.add_delete("/v2/dlq", dlq.delete_many)
    r.add_post("/v2/dlq/retry", dlq.retry_many)
    r.add_post("/v2/dlq/retry/{id}", dlq.retry_one)
    r.add_get("/v2/dlq/{id}", dlq.get)
    r.add_delete("/v2/dlq/{id}", dlq.delete)
    _schedule_routes(r)
    _queue_and_group_routes(r)
    r.add_get("/v2/keys", signing_key.get)
    r.add_post("/v2/keys/rotate", signing_key.rotate)
    r.add_post("/v2/rotate", signing_key.rotate)
    r.add_get("/v2/flowControl", flow_control.list_)
    r.add_get("/v2/flowControl/{key}", flow_control.get)
    r.add_post("/v2/flowControl/{key}/pause", flow_control.pause)
    r.add_post("/v2/flowControl/{key}/resume", flow_control.resume)
    r.add_post("/v2/flowControl/{key}/pin", flow_control.pin)
    r.add_post("/v2/flowControl/{key}/unpin", flow_control.unpin)
    r.add_post("/v2/flowControl/{key}/resetRate", flow_control.reset_rate)
    r.add_get("/v2/globalParallelism", flow_control.global_parallelism)


def _schedule_routes(r: web.UrlDispatcher) -> None:
    for method in ("PATCH", "POST"):
        r.add_route(method, "/v2/schedules/{id}/pause", schedule.pause)
        r.add_route(method, "/v2/schedules/{id}/resume", schedule.resume)
    r.add_post("/v2/schedules/{tail:.+}", schedule.create)
    r.add_get("/v2/schedules", schedule.list_)
    r.add_get("/v2/schedules/{id}", schedule.get)
    r.add_delete("/v2/schedules/{id}", schedule.delete)


def _queue_and_group_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/v2/queues", queue.upsert)
    r.add_get("/v2/queues", queue.list_)
    r.add_get("/v2/queues/{name}", queue.get)
    r.add_delete("/v2/queues/{name}", queue.delete)
    r.add_post("/v2/queues/{name}/pause", queue.pause)
    r.add_post("/v2/queues/{name}/resume", queue.resume)
    r.add_post("/v2/topics/{name}/endpoints", url_group.upsert_endpoints)
    r.add_delete("/v2/topics/{name}/endpoints", url_group.remove_endpoints)
    r.add_get("/v2/topics", url_group.list_)
    r.add_get("/v2/topics/{name}", url_group.get)
    r.add_delete("/v2/topics/{name}", url_group.delete)


async def _background(app: web.Application) -> AsyncIterator[None]:
    """Own the delivery session, the delivery engine and the scheduler for the app's life."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    # No cookie jar: deliveries must not carry one destination's cookies to the next.
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        tasks = [
            asyncio.create_task(app[DISPATCHER].run(session), name="qstash_local.dispatcher"),
            asyncio.create_task(Scheduler(app[PUBLISHER]).run(), name="qstash_local.scheduler"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def make_app(config: Config | None = None) -> web.Application:
    """Build a QStash-compatible application; all its state lives in memory."""
    config = config or Config()
    app = web.Application(
        middlewares=[json_errors, bearer_auth], client_max_size=config.max_request_bytes
    )
    state = State(config)
    dispatcher = Dispatcher(state)
    app[CONFIG] = config
    app[STATE] = state
    app[DISPATCHER] = dispatcher
    app[PUBLISHER] = Publisher(dispatcher)
    app[LIMITER] = Limiter(config)
    _routes(app)
    app.cleanup_ctx.append(_background)
    return app
