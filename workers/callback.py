"""The failure-callback endpoint: QStash's verdict ends a dispatch (DESIGN.md rule 5).

QStash calls it once when a message finally fails.  For the current dispatch of an
unfinished job it records ``JobFailed`` (answering "try later" while an attempt's lease is
live); the job's own failure callback hears of it from the notifier, as for every other
way a job fails.  Anything else is acknowledged and ignored.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
import structlog
from aiohttp import web

from jobstore import (
    DeliveryToken,
    Event,
    JobError,
    JobState,
    TokenUsedError,
    change,
    envelope,
)
from workers import decision, outage
from workers.context import HOST, HostContext
from workers.decision import Answer
from workers.verification import REFUSED, VerificationError
from workers.worker import respond

log = structlog.get_logger("jobtrail.callback")


async def failure_callback(request: web.Request) -> web.Response:
    """Record QStash's final failure of a dispatch."""
    return respond(await _receive(request))


async def _receive(request: web.Request) -> Answer:
    ctx = request.app[HOST]
    body = await request.read()
    try:
        token = ctx.verifier.verify(
            request.headers.get("Upstash-Signature"), body, request.raw_path
        )
    except VerificationError as exc:
        log.warning("failure callback refused: bad signature", reason=str(exc))
        return Answer(401, REFUSED)
    try:
        report = orjson.loads(body)
        source = envelope.parse(base64.b64decode(report.get("sourceBody") or ""))
    except (orjson.JSONDecodeError, AttributeError, ValueError, envelope.EnvelopeError) as exc:
        log.info("failure callback for something that is not a job; ignored", reason=str(exc))
        return Answer(200, "not a jobtrail job; ignored")
    if not isinstance(source, envelope.JobDelivery):
        message_id = str(report.get("sourceMessageId") or "")
        job_id, dispatch = source.job_id(message_id), 1
    else:
        job_id, dispatch = source.job_id, source.dispatch
    try:
        return await _settle(ctx, job_id, dispatch, report, token)
    except Exception as exc:
        unavailable = outage.answer_for(exc)
        if unavailable is None:
            raise
        return unavailable


async def _settle(
    ctx: HostContext, job_id: str, dispatch: int, report: dict[str, Any], token: DeliveryToken
) -> Answer:
    def decide(state: JobState) -> tuple[list[Event], decision.Respond]:
        choice = decision.decide_qstash_gave_up(state, dispatch, time.time())
        return choice.events, choice

    try:
        changed = await change.change(ctx.store, job_id, decide, token=token)
    except TokenUsedError:
        return Answer(200, "this failure callback was handled before")
    except JobError as exc:
        if exc.code != "CONTENDED":
            raise
        return Answer(503, "job is contended; retry later", retry_after=1)
    if changed is None:
        return Answer(200, "unknown job; ignored")
    if changed.events:
        log.warning(
            "job failed: QStash gave up",
            job_id=job_id,
            dispatch=dispatch,
            last_status=report.get("status"),
        )
    return changed.result.answer
