"""A job's page: its timeline, errors with tracebacks, result, payload and options (masked),
message ids; and the actions cancel, replay, and edit-payload-and-replay, with a reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

import projections
from jobstore import JobError, JobState, RecordedEvent, tracing
from projections import Scope
from workers.dashboard import context, edit, personal, render, timeline

MAX_REASON: Final = 1000
_FINAL: Final = ("completed", "failed", "cancelled")


def add_routes(app: web.Application) -> None:
    """Register the job page, its live fragment and its actions."""
    app.router.add_get("/jobs/{id}", show, name="job")
    app.router.add_get("/jobs/{id}/live", live_part, name="job_live")
    app.router.add_post("/jobs/{id}/cancel", cancel, name="job_cancel")
    app.router.add_post("/jobs/{id}/replay", replay, name="job_replay")


def _job_id(request: web.Request) -> str:
    text = request.match_info["id"]
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise web.HTTPNotFound(text=f"{text[:60]!r} is not a job id (a UUID)") from None


def _raw(request: web.Request) -> bool:
    """Whether the page shows values unmasked (``?raw=true``: admin only)."""
    if request.query.get("raw") != "true":
        return False
    context.require(request, Scope.ADMIN)
    return True


async def _history(request: web.Request, job_id: str) -> tuple[list[RecordedEvent], bool]:
    """The job's events and whether retention archived them (404 if there are none)."""
    store = context.dispatcher(request).store
    history = await projections.get_job_history(store, job_id)
    archived = not history
    if archived:
        history = await store.read_archived_stream(f"job-{job_id}")
    if not history:
        raise JobError(f"no job with id {job_id!r}", "JOB_NOT_FOUND", job_id)
    return await personal.shown(request, history), archived


def _view(request: web.Request, job_id: str, history: list[RecordedEvent]) -> dict[str, Any]:
    raw = _raw(request)

    def shown(value: Any) -> Any:
        return render.shown(value, raw)

    drawn = timeline.build(history, shown, datetime.now(UTC))
    at = _at(request, len(history))
    state: JobState = drawn.states[-1 if at is None else at - 1]
    return {
        "job_id": job_id,
        "raw": raw,
        "tl": drawn,
        "state": state,
        "at": at,
        "versions": len(history),
        "payload": shown(state.payload),
        "metadata": shown(state.metadata),
        "options": shown(state.options.model_dump(mode="json")),
        "result": shown(state.result),
        "error": None if state.last_error is None else shown(state.last_error),
        "message_ids": [e.message_id for e in drawn.entries if e.message_id],
        "traces": tracing.trace_ids(r.metadata for r in history),
        "final": state.status.value in _FINAL,
        "replayable": _replayable(state),
        "width": timeline.WIDTH,
    }


def _replayable(state: JobState) -> bool:
    status = state.status.value
    return status == "failed" or (status == "cancelled" and not state.ever_completed)


def _at(request: web.Request, count: int) -> int | None:
    """The event to show the job's state after (``?at=<version>``), None for now."""
    text = request.query.get("at")
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= count:
        raise projections.InvalidFilterError("at", f"{text[:20]!r} is not a version 1 to {count}")
    return int(text)


async def show(request: web.Request) -> web.Response:
    """GET /jobs/{id}: the whole job."""
    job_id = _job_id(request)
    history, archived = await _history(request, job_id)
    values = _view(request, job_id, history)
    values |= {
        "archived": archived,
        "edit_text": render.pretty(values["payload"]),
        "live": None if values["final"] or values["at"] else "job",
        "live_url": f"/jobs/{job_id}/live" + ("?raw=true" if values["raw"] else ""),
    }
    return render.page(request, "job.html", values)


async def live_part(request: web.Request) -> web.Response:
    """GET /jobs/{id}/live: the job's state and timeline alone (for live updates)."""
    job_id = _job_id(request)
    history, _archived = await _history(request, job_id)
    values = _view(request, job_id, history)
    values["live_url"] = f"/jobs/{job_id}/live" + ("?raw=true" if values["raw"] else "")
    return render.fragment("_job_live.html", values)


def _reason(form: Any) -> str:
    reason = form.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise projections.InvalidFilterError("reason", "say why (it is recorded in the event)")
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise projections.InvalidFilterError(
            "reason", f"must be text of at most {MAX_REASON} characters without NUL"
        )
    return reason.strip()


async def cancel(request: web.Request) -> web.Response:
    """POST /jobs/{id}/cancel: stop the job's future attempts."""
    context.require(request, Scope.OPERATE)
    job_id = _job_id(request)
    reason = _reason(await request.post())
    await context.dispatcher(request).cancel(job_id, reason, actor=context.actor(request))
    return render.redirect(f"/jobs/{job_id}")


async def replay(request: web.Request) -> web.Response:
    """POST /jobs/{id}/replay: dispatch the job again, with an edited payload if given.

    Masked values left as shown keep their stored values; changing one needs ``admin``.
    """
    found = context.require(request, Scope.OPERATE)
    job_id = _job_id(request)
    form = await request.post()
    reason = _reason(form)
    dispatcher = context.dispatcher(request)
    payload = None
    text = form.get("payload")
    if isinstance(text, str) and text.strip():
        state = await dispatcher.load(job_id)
        if state is None:
            raise JobError(f"no job with id {job_id!r}", "JOB_NOT_FOUND", job_id)
        submitted = _json_object(text)
        merged, touched = edit.restore_masked(submitted, state.payload)
        if touched and not found.allows(Scope.ADMIN):
            raise context.ScopeRefused(Scope.ADMIN, found.token.name)
        payload = None if merged == state.payload else merged
    await dispatcher.replay_job(job_id, reason, payload=payload, actor=context.actor(request))
    return render.redirect(f"/jobs/{job_id}")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise projections.InvalidFilterError("payload", f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise projections.InvalidFilterError("payload", "must be a JSON object")
    return value
