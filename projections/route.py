"""The API's routes: parse and check the request, call the library, answer JSON."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import orjson
from aiohttp import web

from jobstore import JobError, job_state
from projections import errors, openapi, personal, reader, replay, serializer, stats
from projections.api_context import actor, context_of, cursor_key, error, reading, require
from projections.filter import FILTER_PARAMETERS, JobFilter, check_job_id
from projections.token import Scope

OPENAPI: Final = "openapi"
MAX_REASON: Final = 1000
_LIMIT = re.compile(r"[0-9]{1,4}")
_LIST_PARAMETERS: Final = (*FILTER_PARAMETERS, "cursor", "limit", "raw")
_RAW: Final = ("raw",)
_ENQUEUE_FIELDS: Final = ("type", "payload", "metadata", "options")


def add_routes(app: web.Application) -> None:
    """Register every route of the API on ``app`` (mounted at ``/api/v1``)."""
    app.router.add_get("/openapi.json", openapi_document, name=OPENAPI)
    app.router.add_post("/jobs/replay", replay_many, name="replayJobs")
    app.router.add_get("/jobs", list_jobs, name="listJobs")
    app.router.add_post("/jobs", enqueue, name="enqueueJob")
    app.router.add_get("/jobs/{id}", get_job, name="getJob")
    app.router.add_get("/jobs/{id}/events", get_events, name="getJobEvents")
    app.router.add_post("/jobs/{id}/replay", replay_one, name="replayJob")
    app.router.add_post("/jobs/{id}/cancel", cancel, name="cancelJob")
    app.router.add_get("/stats", get_stats, name="getStats")
    app.router.add_get("/schedules", list_schedules, name="listSchedules")
    app.router.add_post("/erasures", erase_subject, name="eraseSubject")


def json(value: Any, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(
        status=status, body=serializer.dumps(value), content_type="application/json"
    )


async def openapi_document(request: web.Request) -> web.Response:
    """GET /openapi.json: this API's OpenAPI 3 document (no token needed)."""
    return json(openapi.document())


async def list_jobs(request: web.Request) -> web.Response:
    """GET /jobs: a filtered page of job executions, newest first."""
    params = _single(request.query.items(), _LIST_PARAMETERS)
    raw = _raw(request, params.pop("raw", None))
    limit = _limit(params.pop("limit", None))
    cursor = params.pop("cursor", None)
    job_filter = JobFilter.from_strings(params)
    async with reading(request) as conn:
        page = await reader.list_page(
            conn, job_filter, cursor=cursor, limit=limit, cursor_key=cursor_key(request)
        )
    items = [serializer.execution(item, raw) for item in page.items]
    body = {"items": items, "next_cursor": page.next_cursor}
    return json(await personal.shown(request, body, raw))


async def get_job(request: web.Request) -> web.Response:
    """GET /jobs/{id}: one job, from the views (or its stream if the views lag behind)."""
    job_id = check_job_id(request.match_info["id"], "id")
    raw = _raw(request, _single(request.query.items(), _RAW).get("raw"))
    ctx = context_of(request)
    async with reading(request) as conn:
        execution = await reader.get_job_execution(conn, job_id)
        attempts = await reader.get_job_attempts(conn, job_id)
    if execution is None:  # folded from its stream, sealed as stored: shown() opens or masks
        state = await ctx.dispatcher.load(job_id)
        execution = None if state is None else job_state.JobExecution.from_state(state)
    if execution is None:
        raise JobError(f"no job with id {job_id!r}", "JOB_NOT_FOUND", job_id)
    body = {
        **serializer.execution(execution, raw),
        "attempts": [serializer.attempt(a, raw) for a in attempts],
    }
    return json(await personal.shown(request, body, raw))


async def get_events(request: web.Request) -> web.Response:
    """GET /jobs/{id}/events: the job's events, in order."""
    job_id = check_job_id(request.match_info["id"], "id")
    raw = _raw(request, _single(request.query.items(), _RAW).get("raw"))
    history = await reader.get_job_history(context_of(request).dispatcher.store, job_id)
    if not history:
        raise JobError(f"no job with id {job_id!r}", "JOB_NOT_FOUND", job_id)
    events = [serializer.event(r, raw) for r in history]
    return json(await personal.shown(request, {"job_id": job_id, "events": events}, raw))


async def get_stats(request: web.Request) -> web.Response:
    """GET /stats: jobs per status and type, and duration percentiles."""
    _single(request.query.items(), ())
    async with reading(request) as conn:
        return json((await stats.get_job_stats(conn)).to_json())


async def list_schedules(request: web.Request) -> web.Response:
    """GET /schedules: every schedule that is not deleted."""
    raw = _raw(request, _single(request.query.items(), _RAW).get("raw"))
    schedules = await context_of(request).dispatcher.schedules.list()
    body = {"items": [serializer.schedule(s, raw) for s in schedules]}
    return json(await personal.shown(request, body, raw))


async def enqueue(request: web.Request) -> web.Response:
    """POST /jobs: validate and record a job; 201 (200 if the idempotency key knew it)."""
    body = await _body(request, _ENQUEUE_FIELDS)
    if "type" not in body or "payload" not in body:
        raise errors.InvalidFilterError("body", "needs 'type' and 'payload'")
    for name in ("payload", "metadata", "options"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise errors.InvalidFilterError(name, "must be a JSON object")
    enqueued = await context_of(request).dispatcher.enqueue_with_position(
        body["type"],
        body["payload"],
        body.get("metadata"),
        body.get("options"),
        actor=actor(request),
    )
    result = {
        "job_id": enqueued.job_id,
        "position": enqueued.position,
        "created": enqueued.created,
        "archived": enqueued.archived,
    }
    return json(result, status=201 if enqueued.created else 200)


async def replay_one(request: web.Request) -> web.Response:
    """POST /jobs/{id}/replay: dispatch a failed or cancelled job again (409 otherwise)."""
    job_id = check_job_id(request.match_info["id"], "id")
    body = await _body(request, ("reason", "payload", "options"))
    position = await context_of(request).dispatcher.replay_job(
        job_id,
        _reason(body),
        payload=_object(body, "payload"),
        options=_object(body, "options"),
        actor=actor(request),
    )
    return json({"job_id": job_id, "position": position})


async def cancel(request: web.Request) -> web.Response:
    """POST /jobs/{id}/cancel: stop a job's future attempts (409 if it is finished); a
    running attempt is not stopped, and the answer says so."""
    job_id = check_job_id(request.match_info["id"], "id")
    reason = _reason(await _body(request, ("reason",)))
    done = await context_of(request).dispatcher.cancel(job_id, reason, actor=actor(request))
    return json(
        {
            "job_id": job_id,
            "position": done.position,
            "attempt_running": done.attempt_running,
            "message": done.message,
        }
    )


async def erase_subject(request: web.Request) -> web.Response:
    """POST /erasures: destroy the data keys of a job, a user's or an organization's jobs."""
    body = await _body(request, ("job_id", "user_id", "organization_id", "reason"))
    return json(await personal.erase(request, body))


async def replay_many(request: web.Request) -> web.Response:
    """POST /jobs/replay: replay every failed or cancelled job the filter selects.

    A filter is required.  Without ``expected_count`` nothing is replayed: the answer is a
    409 telling the count; sent back as ``expected_count``, the replay proceeds if the
    count is still the same (409 with the new count otherwise).
    """
    body = await _body(request, (*FILTER_PARAMETERS, "reason", "expected_count"))
    reason = _reason(body)
    body.pop("reason", None)
    expected = _expected_count(body.pop("expected_count", None))
    job_filter = JobFilter.from_strings(body)
    ctx = context_of(request)
    async with reading(request) as conn:
        try:
            if expected is None:
                raise replay.CountMismatchError(
                    await replay.count_replayable(conn, job_filter), None
                )
            outcome = await replay.replay_jobs(
                conn,
                ctx.dispatcher,
                job_filter,
                reason=reason,
                actor=actor(request),
                expected_count=expected,
            )
        except replay.CountMismatchError as exc:
            code = "CONFIRM_COUNT" if exc.expected is None else "COUNT_CHANGED"
            return error(409, str(exc), code, count=exc.count)
    return json(outcome.to_json())


def _expected_count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise errors.InvalidFilterError("expected_count", "must be a count (an integer >= 0)")
    return value


def _single(items: Iterable[tuple[str, str]], allowed: Iterable[str]) -> dict[str, str]:
    """Query parameters as a dict; unknown or repeated ones are errors naming them."""
    known = tuple(allowed)
    values: dict[str, str] = {}
    for name, value in items:
        if name not in known:
            valid = ", ".join(known) if known else "none"
            raise errors.InvalidFilterError(name[:60], f"unknown parameter; known: {valid}")
        if name in values:
            raise errors.InvalidFilterError(name, "given more than once")
        values[name] = value
    return values


def _raw(request: web.Request, text: str | None) -> bool:
    """Whether the caller asked for unredacted values (``raw=true``: admin scope only)."""
    if text is None or text == "false":
        return False
    if text != "true":
        raise errors.InvalidFilterError("raw", f"{text[:20]!r} is not true or false")
    require(request, Scope.ADMIN)
    return True


def _limit(text: str | None) -> int:
    if text is None:
        return reader.DEFAULT_LIMIT
    if not _LIMIT.fullmatch(text):
        return reader.check_limit(text)  # raises, naming limit
    return reader.check_limit(int(text))


async def _body(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.InvalidFilterError("body", "is not valid JSON") from None
    if not isinstance(value, dict):
        raise errors.InvalidFilterError("body", "must be a JSON object")
    for name in value:
        if name not in allowed:
            raise errors.InvalidFilterError(
                name[:60], f"unknown field; known: {', '.join(allowed)}"
            )
    return value


def _object(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    """An optional JSON object field of ``body`` (400 naming it when it is not one)."""
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise errors.InvalidFilterError(name, "must be a JSON object")
    return value


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON or "\x00" in reason:
        raise errors.InvalidFilterError(
            "reason", f"must be text of at most {MAX_REASON} characters without NUL"
        )
    return reason
