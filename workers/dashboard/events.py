"""The event log: the newest events first, filtered by event type and stream, live."""

from __future__ import annotations

import re
from typing import Any, Final

import orjson
from aiohttp import web

import jobstore
import projections
from jobstore import actor as actor_of
from projections import Scope
from workers.dashboard import context, personal, render

LIMIT: Final = 100
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def add_routes(app: web.Application) -> None:
    """Register the event log page and its live rows."""
    app.router.add_get("/events", show, name="events")
    app.router.add_get("/events/rows", rows, name="event_rows")


def _params(request: web.Request) -> dict[str, str]:
    params = {}
    for name in ("type", "stream", "before"):
        value = request.query.get(name, "").strip()
        if not value:
            continue
        if not _NAME.fullmatch(value) or (name == "before" and not value.isdigit()):
            raise projections.InvalidFilterError(name, f"{value[:60]!r} is not a valid {name}")
        params[name] = value
    return params


async def _read(request: web.Request, params: dict[str, str]) -> list[dict[str, Any]]:
    raw = request.query.get("raw") == "true"
    if raw:
        context.require(request, Scope.ADMIN)
    before = int(params["before"]) if "before" in params else None
    async with context.reading(request) as conn:
        found = await conn.fetch(
            context.queries()["recent_events"],
            before,
            params.get("type"),
            params.get("stream"),
            LIMIT,
        )
    shown = [
        {
            "position": r["position"],
            "stream_id": r["stream_id"],
            "version": r["version"],
            "type": r["event_type"],
            "recorded_at": r["recorded_at"],
            "data": render.shown(orjson.loads(r["data"]), raw),
            "actor": actor_of.of(orjson.loads(r["metadata"])),
            "job_id": r["stream_id"].removeprefix("job-")
            if r["stream_id"].startswith("job-")
            else None,
        }
        for r in found
    ]
    return await personal.shown_rows(request, shown, raw)


async def show(request: web.Request) -> web.Response:
    """GET /events: the newest events matching the filters."""
    params = _params(request)
    found = await _read(request, params)
    types = sorted(t for t in jobstore.event.known_types() if not t.startswith("test"))
    live_params = {k: v for k, v in params.items() if k != "before"}
    values = {
        "params": params,
        "rows": found,
        "types": types,
        "older": found[-1]["position"] if len(found) == LIMIT else None,
        "rows_url": "/events/rows" + render.query_string(live_params),
        "live": None if "before" in params else "events",
    }
    return render.page(request, "events.html", values)


async def rows(request: web.Request) -> web.Response:
    """GET /events/rows: the newest rows alone (swapped in by live updates)."""
    params = _params(request)
    values = {
        "rows": await _read(request, params),
        "rows_url": "/events/rows" + render.query_string(params),
    }
    return render.fragment("_events_rows.html", values)
