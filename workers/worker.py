"""``create_job_worker``: the aiohttp route that receives QStash deliveries of jobs.

Order of work, each step before the next: verify the signature (401), parse the envelope
(489, nothing written), mint the job of a scheduled run, then the attempt runtime.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from jobstore import (
    envelope,
    tracing,
)
from workers import attempt, outage, run
from workers.context import HOST, HostContext
from workers.decision import Answer
from workers.verification import REFUSED, VerificationError

log = structlog.get_logger("jobtrail.worker")
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_job_worker(handler: Callable[..., Any] | None = None) -> Route:
    """Wrap a job handler in QStash verification and execution tracking (the seed's API).

    ``handler(payload, job)`` gets the job type's payload model and a ``BaseJob``; without a
    handler the route runs the one registered for the job's type.
    """

    async def route(request: web.Request) -> web.StreamResponse:
        ctx = request.app[HOST]
        started = time.perf_counter()
        answer, job_type = await _receive(ctx, request, handler)
        ctx.metrics.deliveries.labels(job_type or "unknown", _outcome(answer.status)).inc()
        log.debug(
            "delivery answered",
            status=answer.status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return respond(answer)

    return route


async def _receive(
    ctx: HostContext, request: web.Request, handler: Callable[..., Any] | None
) -> tuple[Answer, str | None]:
    """How to answer one delivery, and the job type it named (for the metrics)."""
    if not ctx.accepting:
        return Answer(503, "host is shutting down", retry_after=5), None
    body = await request.read()
    try:
        token = ctx.verifier.verify(
            request.headers.get("Upstash-Signature"), body, request.raw_path
        )
    except VerificationError as exc:
        log.warning("delivery refused: bad signature", path=request.path, reason=str(exc))
        return Answer(401, REFUSED), None
    try:
        parsed = envelope.parse(body)
    except envelope.EnvelopeError as exc:
        log.warning("signed delivery cannot be tied to a job", reason=str(exc))
        return Answer(489, str(exc), non_retryable=True), None
    message_id = request.headers.get("Upstash-Message-Id")
    if isinstance(parsed, envelope.ScheduledRun) and not message_id:
        reason = "a scheduled run without Upstash-Message-Id cannot be tied to a job"
        return Answer(489, reason, non_retryable=True), parsed.type
    trace = parsed.trace if isinstance(parsed, envelope.JobDelivery) else None
    try:
        with tracing.consuming(parsed.type, trace, message_id=message_id or "") as span:
            job_id, dispatch = await _resolve(ctx, parsed, message_id, request.raw_path)
            answer = await attempt.deliver(ctx, job_id, dispatch, token, message_id, handler)
            tracing.answered(span, answer.status)
    except envelope.EnvelopeError as exc:
        log.warning("scheduled run refused", reason=str(exc), message_id=message_id)
        return Answer(489, str(exc), non_retryable=True), parsed.type
    except run.QStashUnavailableError as exc:
        log.warning("QStash unavailable; asking it to retry", error=str(exc))
        return Answer(503, "QStash unavailable; retry later", retry_after=5), parsed.type
    except Exception as exc:
        unavailable = outage.answer_for(exc)
        if unavailable is None:
            raise
        log.warning("database unavailable; asking QStash to retry", error=str(exc)[:300])
        return unavailable, parsed.type
    return answer, parsed.type


async def _resolve(
    ctx: HostContext,
    parsed: envelope.JobDelivery | envelope.ScheduledRun,
    message_id: str | None,
    raw_path: str,
) -> tuple[str, int]:
    """The job and dispatch a delivery is for; a scheduled run's job is minted first.

    A scheduled run's job id comes from its QStash message id, an unsigned header: before
    a run mints a job, QStash must confirm that message exists and is this schedule's
    delivery to this URL, so a forged message id cannot make a job.
    """
    if isinstance(parsed, envelope.JobDelivery):
        return parsed.job_id, parsed.dispatch
    return await run.mint(ctx, parsed, message_id or "", ctx.verifier.url_for(raw_path)), 1


def _outcome(status: int) -> str:
    return {
        200: "completed",
        401: "unauthorized",
        489: "rejected",
        500: "failed",
        503: "deferred",
    }.get(status, str(status))


def respond(answer: Answer) -> web.Response:
    """The HTTP response for ``answer``, with the headers that steer QStash's retries."""
    headers: dict[str, str] = {}
    if answer.non_retryable:
        headers["Upstash-NonRetryable-Error"] = "true"
    if answer.retry_after is not None:
        headers["Retry-After"] = str(answer.retry_after)
    body: dict[str, Any] = {"status": answer.status, "message": answer.reason}
    if answer.status >= 400:
        body = {"error": answer.reason}
    elif answer.result is not None:
        body["result"] = answer.result
    return web.json_response(body, status=answer.status, headers=headers, dumps=_json)


def _json(value: Any) -> str:
    """``value`` as JSON text, by orjson (the standard library's encoder took ~1.5 % of a
    host's CPU; a result is stored only once orjson has encoded it: ``attempt._storable``)."""
    return orjson.dumps(value).decode()
