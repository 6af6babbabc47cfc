"""``GET /v2/events`` (and ``/v2/logs``): the message log with filters and a cursor (§9)."""

from __future__ import annotations

from aiohttp import web

from qstash_local.api import filter as filters
from qstash_local.api.context import STATE, json_response
from qstash_local.error import BadRequest
from qstash_local.event_log import Event, event_json


def _cursor(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(
            f"invalid cursor {value!r}: pass back the cursor of a previous page"
        ) from None


def _select(request: web.Request) -> tuple[list[Event], str | None]:
    query = request.query
    selected = filters.parse_filter(query, filters.EVENTS)
    count = filters.page_size(query, 1000, 1000)
    cursor = _cursor(query.get("cursor"))
    earliest = query.get("order") == "earliestFirst"
    log = request.app[STATE].events
    rows: list[Event] = []
    for event in log.oldest_first() if earliest else log.newest_first():
        if cursor is not None and (event.seq <= cursor if earliest else event.seq >= cursor):
            continue
        if not selected.accepts_state(event.state):
            continue
        if not selected.matches(event.message, event.time_ms):
            continue
        if len(rows) == count:
            return rows, str(rows[-1].seq)
        rows.append(event)
    return rows, None


async def events(request: web.Request) -> web.Response:
    """List log rows, newest first unless ``order=earliestFirst``."""
    rows, cursor = _select(request)
    out: dict[str, object] = {"events": [event_json(e) for e in rows]}
    if cursor is not None:
        out["cursor"] = cursor
    return json_response(out)


async def logs(request: web.Request) -> web.Response:
    """The OpenAPI name of the same list, answered with both ``logs`` and ``events`` keys."""
    rows, cursor = _select(request)
    rendered = [event_json(e) for e in rows]
    out: dict[str, object] = {"logs": rendered, "events": rendered}
    if cursor is not None:
        out["cursor"] = cursor
    return json_response(out)
