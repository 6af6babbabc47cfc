"""Schedules: list, create (cron validated, next runs shown), pause, resume, delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web
from croniter import croniter

import jobstore
from jobstore import JobValidationError
from projections import Scope
from workers.dashboard import context, render

NEXT_RUNS: Final = 5


def add_routes(app: web.Application) -> None:
    """Register the schedules page and its actions."""
    app.router.add_get("/schedules", show, name="schedules")
    app.router.add_post("/schedules", create, name="schedule_create")
    app.router.add_post("/schedules/{id}/{action:pause|resume|delete}", change, name="schedule")


def next_runs(cron: str, count: int = NEXT_RUNS, now: datetime | None = None) -> list[datetime]:
    """The next ``count`` times ``cron`` fires (in UTC), after validating it."""
    text = jobstore.validate_cron(cron)
    zone = UTC
    if text.startswith("CRON_TZ="):
        prefix, _, text = text.partition(" ")
        zone = ZoneInfo(prefix.removeprefix("CRON_TZ="))  # type: ignore[assignment]
    start = (now or datetime.now(UTC)).astimezone(zone)
    it = croniter(text, start)
    return [it.get_next(datetime).astimezone(UTC) for _ in range(count)]


async def _values(request: web.Request, **extra: Any) -> dict[str, Any]:
    dispatcher = context.dispatcher(request)
    listed = []
    for schedule in await dispatcher.schedules.list():
        listed.append(
            {"s": schedule, "next": [] if schedule.paused else next_runs(schedule.cron, 3)}
        )
    values: dict[str, Any] = {
        "schedules": listed,
        "types": sorted(dispatcher.registry.types()),
        "form": {"type": "", "cron": "", "payload": "{}"},
        "preview": [],
        "error": None,
        "details": [],
    }
    return values | extra


async def show(request: web.Request) -> web.Response:
    """GET /schedules: every schedule; ``?cron=`` previews an expression's next runs."""
    cron = request.query.get("cron", "").strip()
    form = {
        "type": request.query.get("type", ""),
        "cron": cron,
        "payload": request.query.get("payload", "{}"),
    }
    preview: list[datetime] = []
    error, details = None, []
    if cron:
        try:
            preview = next_runs(cron)
        except JobValidationError as exc:
            error, details = exc.message, exc.validation_errors
    values = await _values(request, form=form, preview=preview, error=error, details=details)
    return render.page(request, "schedules.html", values, status=400 if error else 200)


async def create(request: web.Request) -> web.Response:
    """POST /schedules: validate and record a schedule (the form again, with why, if not)."""
    context.require(request, Scope.OPERATE)
    form = await request.post()
    fields = {k: str(form.get(k, "")).strip() for k in ("type", "cron", "payload")}
    try:
        payload = orjson.loads(fields["payload"] or "{}")
        if not isinstance(payload, dict):
            raise JobValidationError("invalid payload", ["payload: must be a JSON object"])
        if fields["type"] not in context.dispatcher(request).registry.types():
            raise JobValidationError("invalid type", [f"type: {fields['type'][:60]!r} is unknown"])
        await context.dispatcher(request).schedule(
            fields["type"], fields["cron"], payload, actor=context.actor(request)
        )
    except orjson.JSONDecodeError as exc:
        values = await _values(request, form=fields, error="invalid payload", details=[str(exc)])
        return render.page(request, "schedules.html", values, status=400)
    except JobValidationError as exc:
        values = await _values(
            request, form=fields, error=exc.message, details=exc.validation_errors
        )
        return render.page(request, "schedules.html", values, status=400)
    return render.redirect("/schedules")


async def change(request: web.Request) -> web.Response:
    """POST /schedules/{id}/pause|resume|delete."""
    context.require(request, Scope.OPERATE)
    schedule_id = request.match_info["id"]
    action = request.match_info["action"]
    schedules = context.dispatcher(request).schedules
    method = {"pause": schedules.pause, "resume": schedules.resume, "delete": schedules.delete}
    await method[action](schedule_id, actor=context.actor(request))
    return render.redirect("/schedules")
