"""``/v2/flowControl`` and ``/v2/globalParallelism`` (protocol §10)."""

from __future__ import annotations

import time

from aiohttp import web

from qstash_local.api.context import DISPATCHER, STATE, int_param, json_response
from qstash_local.duration import parse_duration
from qstash_local.error import BadRequest, NotFound
from qstash_local.flow_control import FlowKey, flow_key_json


def _existing(request: web.Request) -> FlowKey:
    key = request.match_info["key"]
    flow = request.app[STATE].flows.get(key)
    if flow is None:
        raise NotFound(f"flow control key {key!r} not found: no message has used it yet")
    return flow


def _lazy(request: web.Request) -> FlowKey:
    # UNVERIFIED: pausing or pinning a key no message used yet creates it (lenient).
    return request.app[STATE].flow(request.match_info["key"])


async def get(request: web.Request) -> web.Response:
    """Return one key's limits and counters."""
    return json_response(flow_key_json(_existing(request)))


async def list_(request: web.Request) -> web.Response:
    """List all keys."""
    return json_response([flow_key_json(f) for f in request.app[STATE].flows.values()])


async def global_parallelism(request: web.Request) -> web.Response:
    """Return the delivery worker count and how many attempts are in flight."""
    dispatcher = request.app[DISPATCHER]
    return json_response(
        {
            "parallelismMax": dispatcher.config.delivery_workers,
            "parallelismCount": dispatcher.in_flight,
        }
    )


async def _paused(request: web.Request, paused: bool) -> web.Response:
    flow = _lazy(request)
    flow.paused = paused
    request.app[DISPATCHER].pump_flow(flow.key)
    return json_response({})


async def pause(request: web.Request) -> web.Response:
    """Pause a key: its messages wait in the waitlist."""
    return await _paused(request, True)


async def resume(request: web.Request) -> web.Response:
    """Resume a paused key."""
    return await _paused(request, False)


def _period(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    seconds = int(value) if value.isdigit() else int(parse_duration(value, name="period"))
    if seconds < 1:
        raise BadRequest(f"invalid period {value!r}: expected at least 1 second")
    return seconds


async def pin(request: web.Request) -> web.Response:
    """Pin parallelism and/or rate and period; resets the rate count and period."""
    query = request.query
    parallelism, rate = int_param(query, "parallelism"), int_param(query, "rate")
    for name, value in (("parallelism", parallelism), ("rate", rate)):
        if value is not None and value < 0:
            raise BadRequest(f"invalid {name} {value}: expected an integer >= 0")
    period = _period(query.get("period"))
    flow = _lazy(request)
    flow.pin(parallelism, rate, period, time.time())
    request.app[DISPATCHER].pump_flow(flow.key)
    return json_response({})


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise BadRequest(f"invalid {name} {value!r}: expected true or false")
    return value.lower() == "true"


async def unpin(request: web.Request) -> web.Response:
    """Clear the chosen pin flags; values stay until a message brings new ones."""
    parallelism = _flag(request.query.get("parallelism"), "parallelism")
    rate = _flag(request.query.get("rate"), "rate")
    flow = _lazy(request)
    flow.pinned_parallelism = flow.pinned_parallelism and not parallelism
    flow.pinned_rate = flow.pinned_rate and not rate
    return json_response({})


async def reset_rate(request: web.Request) -> web.Response:
    """Zero the rate count and start a new period now."""
    flow = _lazy(request)
    flow.reset_rate(time.time())
    request.app[DISPATCHER].pump_flow(flow.key)
    return json_response({})
