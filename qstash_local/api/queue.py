"""``/v2/queues``: upsert, list, get, delete, pause and resume queues (protocol §12)."""

from __future__ import annotations

import time

from aiohttp import web

from qstash_local.api.context import CONFIG, DISPATCHER, STATE, json_response, read_json
from qstash_local.error import BadRequest, NotFound
from qstash_local.queue import Queue, queue_json
from qstash_local.spec import check_name
from qstash_local.state import State


def _find(state: State, name: str) -> Queue:
    queue = state.queues.get(name)
    if queue is None:
        raise NotFound(f"queue {name!r} not found")
    return queue


async def upsert(request: web.Request) -> web.Response:
    """Create or update a queue from ``{"queueName", "parallelism", "paused"}``."""
    payload = await read_json(request, request.app[CONFIG].max_request_bytes)
    if not isinstance(payload, dict) or not isinstance(payload.get("queueName"), str):
        raise BadRequest('body must be {"queueName": str, "parallelism": int, "paused": bool}')
    name = check_name(payload["queueName"], what="queueName")
    parallelism = payload.get("parallelism", 1)
    paused = payload.get("paused", False)
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise BadRequest(f"invalid parallelism {parallelism!r}: expected an integer >= 1")
    if not isinstance(paused, bool):
        raise BadRequest(f"invalid paused {paused!r}: expected true or false")
    dispatcher = request.app[DISPATCHER]
    queue = dispatcher.queue(name)
    queue.parallelism = parallelism
    queue.paused = paused
    queue.updated_ms = int(time.time() * 1000)
    dispatcher.pump_queue(queue)
    return json_response({})


async def list_(request: web.Request) -> web.Response:
    """List all queues."""
    return json_response([queue_json(q) for q in request.app[STATE].queues.values()])


async def get(request: web.Request) -> web.Response:
    """Return one queue; 404 if it does not exist."""
    return json_response(queue_json(_find(request.app[STATE], request.match_info["name"])))


async def delete(request: web.Request) -> web.Response:
    """Delete a queue; its waiting messages are cancelled (UNVERIFIED: 404 if missing)."""
    state = request.app[STATE]
    queue = _find(state, request.match_info["name"])
    dispatcher = request.app[DISPATCHER]
    for message in list(queue.waiting):
        dispatcher.cancel(message)
    del state.queues[queue.name]
    return json_response({})


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    queue = _find(request.app[STATE], request.match_info["name"])
    queue.paused = paused
    queue.updated_ms = int(time.time() * 1000)
    request.app[DISPATCHER].pump_queue(queue)
    return json_response({})


async def pause(request: web.Request) -> web.Response:
    """Pause a queue: messages wait until it is resumed."""
    return await _set_paused(request, True)


async def resume(request: web.Request) -> web.Response:
    """Resume a paused queue."""
    return await _set_paused(request, False)
