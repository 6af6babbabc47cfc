"""``/v2/schedules``: create (upsert), list, get, delete, pause and resume (protocol §6)."""

from __future__ import annotations

import time

from aiohttp import web
from multidict import CIMultiDict

from qstash_local import ident
from qstash_local.api.context import (
    CONFIG,
    STATE,
    caller_ip,
    json_response,
    merged_headers,
    raw_tail,
    read_body,
)
from qstash_local.error import BadRequest, NotFound
from qstash_local.publisher import is_url
from qstash_local.schedule import Schedule, parse_cron, schedule_json
from qstash_local.spec import check_name, check_url, parse_spec
from qstash_local.state import State


def _find(state: State, schedule_id: str) -> Schedule:
    schedule = state.schedules.get(schedule_id)
    if schedule is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    return schedule


def _destination(destination: str) -> str:
    if is_url(destination):
        return check_url(destination, what="destination")
    return check_name(destination, what="destination url group name")


def _schedule_id(headers: CIMultiDict[str]) -> str:
    custom = headers.get("Upstash-Schedule-Id")
    if custom is None:
        return ident.schedule_id()
    return check_name(custom, what="Upstash-Schedule-Id")


async def create(request: web.Request) -> web.Response:
    """Create a schedule, or update the one named by ``Upstash-Schedule-Id``."""
    config = request.app[CONFIG]
    destination, query = raw_tail(request, "/v2/schedules/")
    headers = merged_headers(request, query)
    body = await read_body(request, config.max_body_bytes)
    cron_text = headers.get("Upstash-Cron")
    if not cron_text:
        raise BadRequest("missing Upstash-Cron header: expected a cron such as '*/5 * * * *'")
    cron = parse_cron(cron_text)
    spec = parse_spec(headers)
    destination = _destination(destination)
    schedule_id = _schedule_id(headers)
    queue_name = headers.get("Upstash-Queue-Name")
    if queue_name is not None:
        check_name(queue_name, what="Upstash-Queue-Name")
    state = request.app[STATE]
    previous = state.schedules.get(schedule_id)
    state.schedules[schedule_id] = Schedule(
        id=schedule_id,
        destination=destination,
        cron=cron,
        spec=spec,
        body=body,
        created_ms=previous.created_ms if previous else int(time.time() * 1000),
        next_s=cron.next_after(config.clock()),
        queue_name=queue_name,
        caller_ip=caller_ip(request),
        # UNVERIFIED: an upsert keeps the paused flag of the schedule it replaces.
        paused=previous.paused if previous else False,
    )
    return json_response({"scheduleId": schedule_id})


async def list_(request: web.Request) -> web.Response:
    """List all schedules, oldest first."""
    schedules = sorted(request.app[STATE].schedules.values(), key=lambda s: s.created_ms)
    return json_response([schedule_json(s) for s in schedules])


async def get(request: web.Request) -> web.Response:
    """Return one schedule."""
    return json_response(schedule_json(_find(request.app[STATE], request.match_info["id"])))


async def delete(request: web.Request) -> web.Response:
    """Delete a schedule; 404 if it does not exist (UNVERIFIED what QStash answers)."""
    state = request.app[STATE]
    _find(state, request.match_info["id"])
    del state.schedules[request.match_info["id"]]
    return json_response({"deleted": 1})


async def pause(request: web.Request) -> web.Response:
    """Pause a schedule (PATCH as the SDKs send it, POST as the docs say); idempotent."""
    _find(request.app[STATE], request.match_info["id"]).paused = True
    return json_response({})


async def resume(request: web.Request) -> web.Response:
    """Resume a paused schedule; its next run is the next cron time from now."""
    config = request.app[CONFIG]
    schedule = _find(request.app[STATE], request.match_info["id"])
    if schedule.paused:
        schedule.paused = False
        schedule.next_s = schedule.cron.next_after(config.clock())
    return json_response({})
