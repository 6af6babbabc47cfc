"""The overview: jobs by type × status, duration percentiles per type, relay backlog,
projection lag and any stopped projection, schedules due next."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from aiohttp import web

import projections
from workers.dashboard import context, render, schedules

RELAY: Final = "relay"
DUE_SHOWN: Final = 5


def add_routes(app: web.Application) -> None:
    """Register the overview and its live fragment."""
    app.router.add_get("/", show, name="overview")
    app.router.add_get("/overview/live", live_part, name="overview_live")


async def _values(request: web.Request) -> dict[str, Any]:
    ctx = context.api_context(request)
    stats = await projections.get_job_stats(ctx.pool)
    statuses = await projections.projection_status(ctx.pool)
    store = ctx.dispatcher.store
    head = await store.last_position()
    backlog = max(0, head - await store.checkpoint(RELAY))
    due: list[tuple[datetime, Any]] = []
    for schedule in await ctx.dispatcher.schedules.list():
        if not schedule.paused:
            due += [(at, schedule) for at in schedules.next_runs(schedule.cron, 1)]
    due.sort(key=lambda pair: pair[0])
    widest = max((t.total for t in stats.by_type.values()), default=0)
    return {
        "stats": stats,
        "widest": max(widest, 1),
        "projections": statuses,
        "stopped": [s for s in statuses if s.failure is not None],
        "head": head,
        "backlog": backlog,
        "due": due[:DUE_SHOWN],
        "percentiles": (50, 90, 99),
    }


async def show(request: web.Request) -> web.Response:
    """GET /: the overview."""
    values = await _values(request)
    values["live"] = "overview"
    return render.page(request, "overview.html", values)


async def live_part(request: web.Request) -> web.Response:
    """GET /overview/live: the overview's figures alone (for live updates)."""
    values = await _values(request)
    return render.fragment("_overview_live.html", values | {"statuses": render.STATUSES})
