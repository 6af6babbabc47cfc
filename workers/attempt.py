"""The attempt runtime: start an attempt, run its handler under a timeout, record the outcome.

Every write goes through ``jobstore.change``: decided on the job's state, appended at the
version the decision saw, decided again when another writer got there first (a duplicate
delivery, a cancel; DESIGN.md rule 2).  Every path ends in one ``decision.Answer``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import math
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pydantic import BaseModel

from jobstore import (
    BaseJob,
    BaseJobMetadata,
    DeliveryToken,
    Event,
    JobError,
    JobState,
    JobTypeSpec,
    JobValidationError,
    NonRetryableJobError,
    RecordedEvent,
    RetryLater,
    TokenUsedError,
    change,
    job_events,
    job_state,
    protect,
    tracing,
)
from workers import decision
from workers.context import HostContext
from workers.decision import Answer

log = structlog.get_logger("jobtrail.worker")
MAX_RESULT_BYTES = 16 * 1024
MAX_TRACEBACK_CHARS = 4000
_CONTENDED = Answer(503, "the job's stream is too contended; try again", retry_after=1)
Prepared = tuple[JobTypeSpec, BaseModel, BaseJob]


async def deliver(
    ctx: HostContext,
    job_id: str,
    dispatch: int,
    token: DeliveryToken,
    message_id: str | None,
    handler: Callable[..., Any] | None = None,
) -> Answer:
    """Carry out one delivery of ``dispatch`` of ``job_id``, signed by ``token``.

    The token is consumed by the ``JobStarted`` it leads to, in the same transaction: a
    captured delivery sent again gets the answer a duplicate would get, and runs nothing.
    """
    replayed = False
    key = change.JobKey()  # read with the stream: the handler sees its data opened

    def decide(state: JobState) -> tuple[Sequence[Event], decision.Respond | Prepared]:
        choice = decision.decide_delivery(
            state, dispatch, message_id, time.time(), ctx.settings.lease_grace_seconds
        )
        if isinstance(choice, decision.Respond):
            return choice.events, choice
        if replayed:
            log.warning("replayed delivery token refused", job_id=job_id, token=token.token_id)
            used = Answer(503, "this signed delivery was used before; nothing run", retry_after=1)
            return [], decision.Respond(used)
        prepared = _prepare(ctx, state, choice.attempt, message_id, handler, key.keys)
        if isinstance(prepared, job_events.JobFailed):  # unknown type or invalid payload
            return [prepared], decision.Respond(Answer(489, prepared.reason, non_retryable=True))
        return choice.events, prepared

    try:
        try:
            changed = await change.change(ctx.store, job_id, decide, token=token, key=key)
        except TokenUsedError:
            replayed = True  # answer as the duplicate of its first use would be answered
            changed = await change.change(ctx.store, job_id, decide, key=key)
    except JobError as exc:
        if exc.code != "CONTENDED":
            raise
        return _CONTENDED
    if changed is None:
        return Answer(489, f"no job {job_id} in the log", non_retryable=True)
    if isinstance(changed.result, decision.Respond):
        return changed.result.answer
    spec, payload, job = changed.result
    return await _run(ctx, _after(changed, job_id), job.attempt, (spec, payload, job), key)


def _after(changed: change.Change[Any], job_id: str) -> JobState:
    """The job's state after the events a change appended (the attempt it started), folded
    here so the outcome can be appended without reading the stream again."""
    state = changed.state
    now = datetime.now(UTC)
    for offset, (event, position) in enumerate(
        zip(changed.events, changed.positions, strict=True), start=1
    ):
        recorded = RecordedEvent(
            position=position,
            stream_id=job_state.stream_id(job_id),
            version=changed.state.version + offset,
            event=event,
            metadata={},
            recorded_at=now,
        )
        state = job_state.evolve(state, recorded)
    return state


def _prepare(
    ctx: HostContext,
    state: JobState,
    attempt: int,
    message_id: str | None,
    handler: Callable[..., Any] | None,
    keys: protect.Keys,
) -> Prepared | job_events.JobFailed:
    """The handler, typed payload and job to run, or the event failing the job."""
    plain = protect.opened(state.payload, keys)
    if plain is None:
        return _failed(state, "PersonalDataErased", "the job's personal data was erased")
    try:
        spec = ctx.registry.get(state.job_type)
        if handler is not None:
            spec = dataclasses.replace(spec, handler=handler)
        if spec.handler is None:
            raise JobError(f"no handler is registered for {state.job_type!r}", "NO_HANDLER")
        payload = spec.payload_model.model_validate(plain)
    except JobError as exc:
        return _failed(state, "UnknownJobType", str(exc))
    except Exception as exc:  # pydantic's ValidationError: the stored payload is invalid
        return _failed(state, "JobValidationError", f"payload is invalid: {exc}")
    job = BaseJob(
        job_id=state.job_id,
        type=state.job_type,
        payload=plain,
        metadata=BaseJobMetadata.model_validate(state.metadata),
        dispatch=state.dispatch,
        attempt=attempt,
        message_id=message_id,
    )
    return spec, payload, job


def _failed(state: JobState, error_type: str, message: str) -> job_events.JobFailed:
    return job_events.JobFailed(
        dispatch=state.dispatch,
        reason=message[:500],
        error_type=error_type,
        error_message=message[:2000],
    )


async def _run(
    ctx: HostContext,
    state: JobState,
    attempt: int,
    prepared: Prepared,
    key: change.JobKey | None = None,
) -> Answer:
    spec, payload, job = prepared
    started = time.perf_counter()
    grace = ctx.settings.lease_grace_seconds
    deadline = time.time() + state.options.timeout + grace
    beat = Heartbeat(ctx, job.job_id, job.dispatch, attempt, state, deadline)
    job._heartbeat = beat
    with structlog.contextvars.bound_contextvars(
        job_id=job.job_id, job_type=job.type, attempt=attempt, message_id=job.message_id
    ):
        log.info("attempt started", dispatch=job.dispatch)
        args = (payload, job, ctx) if takes_host(spec.handler) else (payload, job)
        try:
            with tracing.handling(job.type, job_id=job.job_id, attempt=attempt):
                result = await _call(spec.handler, args, state.options.lease_seconds, beat)
        except Exception as exc:
            duration = time.perf_counter() - started
            ctx.metrics.handler_seconds.labels(job.type).observe(duration)
            return await _record_failure(ctx, job, attempt, exc, duration, beat.state, key)
        duration = time.perf_counter() - started
        ctx.metrics.handler_seconds.labels(job.type).observe(duration)
        return await _record_success(
            ctx, job, attempt, duration, _storable(result), beat.state, key
        )


@dataclasses.dataclass
class Heartbeat:
    """A running attempt's ``job.heartbeat()``: extends its lease in the log (coalesced, see
    ``decision.decide_heartbeat``) and moves the handler's local deadline with it.

    It names its job by id and dispatch, not by the ``BaseJob`` that holds it: a reference
    back would make each delivery a reference cycle (the job, its heartbeat, its timer, the
    request's task), left for the cyclic collector, which then took ~20 % of a host's CPU.
    """

    ctx: HostContext
    job_id: str
    dispatch: int
    attempt: int
    state: JobState
    """The latest state this attempt knows (its outcome is appended against it)."""
    deadline: float
    """The lease never passes this (Unix time): the attempt's start plus its timeout."""
    timer: asyncio.Timeout | None = None

    async def __call__(self) -> bool:
        """Extend the lease; False when the attempt was closed meanwhile."""
        grace = self.ctx.settings.lease_grace_seconds
        dispatch, attempt = self.dispatch, self.attempt

        def decide(state: JobState) -> tuple[list[Event], float | None]:
            return decision.decide_heartbeat(
                state, dispatch, attempt, time.time(), grace, self.deadline
            )

        try:
            changed = await change.change(self.ctx.store, self.job_id, decide, known=self.state)
        except JobError as exc:
            if exc.code != "CONTENDED":
                raise
            return True  # the lease still holds; the next heartbeat tries again
        if changed is None:
            return False
        self.state = _after(changed, self.job_id)
        lease = changed.result
        if lease is None:
            log.warning("heartbeat of an attempt that was closed meanwhile")
            return False
        if self.timer is not None:  # the handler may run until its lease's end
            left = max(0.0, lease - grace - time.time())
            self.timer.reschedule(asyncio.get_running_loop().time() + left)
        return True


@functools.lru_cache(maxsize=1024)
def takes_host(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` asks for the host as a third argument: ``(payload, job, host)``."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in parameters) >= 3


async def _call(handler: Any, args: tuple[Any, ...], limit: float, beat: Heartbeat) -> Any:
    """Run ``handler`` for ``limit`` seconds, which its heartbeats extend; a plain function
    runs in a thread and the timeout stops waiting."""
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - callable objects with async __call__
    ):
        async with asyncio.timeout(limit) as timer:
            beat.timer = timer
            return await handler(*args)
    return await asyncio.wait_for(asyncio.to_thread(handler, *args), limit)


async def _record_success(
    ctx: HostContext,
    job: BaseJob,
    attempt: int,
    duration: float,
    result: Any,
    known: JobState,
    key: change.JobKey | None,
) -> Answer:
    outcome = await _record(
        ctx,
        job,
        attempt,
        lambda s: decision.decide_success(s, job.dispatch, attempt, duration, result),
        known,
        key,
    )
    log.info("attempt completed", duration_seconds=round(duration, 4))
    if outcome is not None:
        return outcome
    return Answer(200, "completed", result=result)


async def _record_failure(
    ctx: HostContext,
    job: BaseJob,
    attempt: int,
    exc: BaseException,
    duration: float,
    known: JobState,
    key: change.JobKey | None,
) -> Answer:
    retryable = not isinstance(exc, JobValidationError | NonRetryableJobError)
    if isinstance(exc, TimeoutError):
        options = known.options
        exc = TimeoutError(
            f"handler did not finish within its timeout of {options.timeout:g} s"
            if options.heartbeat is None
            else f"handler sent no heartbeat within its lease of {options.lease_seconds:g} s "
            f"(heartbeat every {options.heartbeat:g} s) or ran past its timeout of "
            f"{options.timeout:g} s"
        )
    trace = _trimmed_traceback(exc)
    recorded: list[Event] = []
    delay = _retry_delay(ctx, known, attempt, exc)

    def decide(state: JobState) -> list[Event]:
        recorded[:] = decision.decide_failure(
            state,
            job.dispatch,
            attempt,
            exc,
            trace,
            duration,
            retryable=retryable,
            retry_after=delay,
        )
        return recorded

    outcome = await _record(ctx, job, attempt, decide, known, key)
    log.warning(
        "attempt failed",
        error_type=type(exc).__name__,
        will_retry=bool(recorded) and getattr(recorded[0], "will_retry", False),
    )
    if outcome is not None:
        return outcome
    if not retryable:
        # Only the error's type: its text may quote personal data (the history has it, sealed).
        return Answer(489, f"non-retryable: {type(exc).__name__}", non_retryable=True)
    if len(recorded) == 1 and getattr(recorded[0], "will_retry", False):
        wait = None if delay is None else math.ceil(delay)
        return Answer(500, f"attempt {attempt} failed: {type(exc).__name__}", retry_after=wait)
    # The job's budget is spent and JobFailed recorded: QStash's headroom must not retry it.
    reason = f"final attempt {attempt} failed: {type(exc).__name__}"
    return Answer(489, reason, non_retryable=True)


def _retry_delay(
    ctx: HostContext, state: JobState, attempt: int, exc: BaseException
) -> float | None:
    """Seconds before the next attempt: the handler's RetryLater, else the job's backoff
    (its type's custom function, else its options); None leaves it to QStash."""
    if isinstance(exc, RetryLater):
        return exc.seconds
    try:
        custom = ctx.registry.get(state.job_type).backoff
    except JobError:
        custom = None
    if custom is not None:
        try:
            return max(0.0, min(7 * 86400.0, float(custom(attempt))))
        except Exception:
            log.exception("the job type's backoff failed; QStash's schedule applies")
            return None
    backoff = state.options.backoff
    return None if backoff is None else backoff.delay(attempt)


async def _record(
    ctx: HostContext,
    job: BaseJob,
    attempt: int,
    decide: Callable[[JobState], list[Event]],
    known: JobState,
    key: change.JobKey | None,
) -> Answer | None:
    """Append an attempt's outcome; None when recorded, an Answer when it cannot be.

    The first try appends against ``known``, the state this attempt started from (its
    version counting the start events): nobody else wrote meanwhile in the common case, so
    the stream is not read again.  A version conflict (a cancel, a takeover, the sweeper)
    folds anew, and the decisions see whether the attempt is still open: an outcome of an
    attempt closed meanwhile, or of a finished job, is recorded as a late report only.
    ``key``: the job's data key as the delivery read it with the job's stream (the outcome
    is sealed with it, without reading the key table, while that dispatch is current).
    """

    def outcome(state: JobState) -> tuple[Sequence[Event], Answer | None]:
        events = decide(state)
        if events and isinstance(events[0], job_events.JobOutcomeLate):
            return events, Answer(200, f"outcome recorded as late: {events[0].closed}")
        if state.status.value == "cancelled":
            return events, Answer(489, "job was cancelled while it ran", True)
        return events, None

    try:
        changed = await change.change(ctx.store, job.job_id, outcome, known=known, key=key)
    except JobError as exc:
        if exc.code != "CONTENDED":
            raise
        return Answer(503, "could not record the outcome; try again", retry_after=1)
    if changed is None:
        log.warning("outcome of a job no longer in the log not recorded")
        return Answer(200, "the job is no longer in the log; outcome not recorded")
    if changed.result is not None and changed.result.status == 200:
        log.warning("late outcome recorded; the job's status stays", reason=changed.result.reason)
    return changed.result


def _storable(result: Any) -> Any:
    """The handler's result if it is small JSON; otherwise a note saying why not."""
    if result is None:
        return None
    try:
        encoded = orjson.dumps(result)
    except TypeError as exc:
        return {"note": f"result not stored: not JSON ({exc})"}
    if len(encoded) > MAX_RESULT_BYTES:
        return {"note": f"result not stored: {len(encoded)} bytes > {MAX_RESULT_BYTES}"}
    return result


def _trimmed_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=15))
    return text[-MAX_TRACEBACK_CHARS:]
