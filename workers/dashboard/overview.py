"""The overview: jobs by type × status, throughput and failure rate over the last hour, day
or week, duration percentiles per type, relay backlog, projection lag and any stopped
projection, schedules due next, the audit trail's lag (what is not chained or anchored
yet, and an alert when anchoring has stopped); and time travel: the counts as they were
at a past moment (``?at=``), from the ``job_buckets`` projection, with where retention
archived history."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
from aiohttp import web

import projections
from jobstore import audit
from projections import trend
from workers.dashboard import chart, context, render, schedules

RELAY: Final = "relay"
ANCHORS_STALE_AFTER: Final = timedelta(minutes=15)
"""An event that has waited this long for an anchor means anchoring has stopped (the
JobtrailAuditAnchorsStale alert's threshold)."""
DUE_SHOWN: Final = 5
DEFAULT_WINDOW: Final = "day"
AT_FORMATS: Final = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def add_routes(app: web.Application) -> None:
    """Register the overview and its live fragment."""
    app.router.add_get("/", show, name="overview")
    app.router.add_get("/overview/live", live_part, name="overview_live")


@dataclass(frozen=True, slots=True)
class TypeRow:
    """One job type's row of the table: its jobs per status (and durations, live only)."""

    name: str
    total: int
    by_status: dict[str, int]
    percentiles: dict[int, float | None] | None


def parse_at(text: str, now: datetime) -> datetime | None:
    """The moment ``?at=`` asks for (UTC), None for now; InvalidFilterError if unreadable
    or in the future."""
    text = text.strip().removesuffix("Z")
    if not text:
        return None
    for fmt in AT_FORMATS:
        try:
            moment = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if moment > now:
            raise projections.InvalidFilterError(
                "at", f"{text} UTC is in the future; choose a moment before {render.when(now)}"
            )
        return moment
    raise projections.InvalidFilterError(
        "at", f"{text[:30]!r} is not a moment; write it as 2026-11-30T09:15 (UTC)"
    )


def _params(request: web.Request) -> dict[str, str]:
    """The overview's own query parameters, as given (for links and the live fragment)."""
    return {k: v for k in ("window", "type", "at") if (v := request.query.get(k, "").strip())}


async def _values(request: web.Request) -> dict[str, Any]:
    ctx = context.api_context(request)
    params = _params(request)
    now = datetime.now(UTC)
    at = parse_at(params.get("at", ""), now)
    window = trend.window(params.get("window", DEFAULT_WINDOW)).name
    chart_type = params.get("type") or None
    store = ctx.dispatcher.store
    # Independent reads, side by side on the pool's connections.
    try:
        async with asyncio.TaskGroup() as group:
            series_task = group.create_task(trend.series(ctx.pool, window, at or now, chart_type))
            archive_task = group.create_task(trend.archive_note(ctx.pool))
            stats_task = group.create_task(projections.get_job_stats(ctx.pool, with_pending=False))
            snapshot_task = group.create_task(_counts_at(ctx.pool, at))
            statuses_task = group.create_task(projections.projection_status(ctx.pool))
            head_task = group.create_task(store.last_position())
            relayed_task = group.create_task(store.checkpoint(RELAY))
            listed_task = group.create_task(ctx.dispatcher.schedules.list())
            audit_task = group.create_task(audit.lag(ctx.pool))
    except BaseExceptionGroup as failed:  # the first error, as the error pages know it
        raise failed.exceptions[0] from None
    series, archive, stats = series_task.result(), archive_task.result(), stats_task.result()
    snapshot, statuses = snapshot_task.result(), statuses_task.result()
    head, relayed, listed = head_task.result(), relayed_task.result(), listed_task.result()
    lag = audit_task.result()
    backlog = max(0, head - relayed)
    due: list[tuple[datetime, Any]] = []
    for schedule in listed:
        if not schedule.paused:
            due += [(at_, schedule) for at_ in schedules.next_runs(schedule.cron, 1)]
    due.sort(key=lambda pair: pair[0])
    rows = _rows(stats, snapshot)
    return {
        "params": params,
        "rows": rows,
        "total": stats.total if snapshot is None else snapshot.total,
        "by_status": stats.by_status if snapshot is None else snapshot.by_status,
        "widest": max([r.total for r in rows] + [1]),
        "snapshot": snapshot,
        "window": window,
        "windows": list(trend.WINDOWS),
        "chart_type": chart_type,
        "types": sorted(set(stats.by_type) | set(series.by_type)),
        "series": series,
        "charts": [chart.throughput(series), chart.failure_rate(series)],
        "archive": archive,
        "projections": statuses,
        "stopped": [s for s in statuses if s.failure is not None],
        "head": head,
        "backlog": backlog,
        "due": due[:DUE_SHOWN],
        "audit": lag,
        "audit_limit": audit.LAG_COUNT_LIMIT,
        "anchor_age": None if lag.last_anchor_at is None else (now - lag.last_anchor_at),
        "anchors_waited": lag.waited(now),
        "anchors_stale": lag.waited(now) > ANCHORS_STALE_AFTER,
        "percentiles": (50, 90, 99),
        "live_url": "/overview/live" + render.query_string(params),
    }


async def _counts_at(pool: asyncpg.Pool, at: datetime | None) -> trend.Snapshot | None:
    return None if at is None else await trend.counts_at(pool, at)


def _rows(stats: projections.JobStats, snapshot: trend.Snapshot | None) -> list[TypeRow]:
    """The table's rows: live counts and durations, or the counts at the moment asked."""
    if snapshot is None:
        return [
            TypeRow(name, t.total, t.by_status, t.durations.percentiles)
            for name, t in stats.by_type.items()
        ]
    return [
        TypeRow(name, sum(counts.values()), counts, None)
        for name, counts in snapshot.by_type.items()
    ]


async def show(request: web.Request) -> web.Response:
    """GET /: the overview (``?window=hour|day|week``, ``?type=``, ``?at=`` a past moment)."""
    values = await _values(request)
    values["live"] = "overview" if values["snapshot"] is None else None
    return render.page(request, "overview.html", values)


async def live_part(request: web.Request) -> web.Response:
    """GET /overview/live: the overview's figures alone (for live updates)."""
    values = await _values(request)
    return render.fragment("_overview_live.html", values | {"statuses": render.STATUSES})
