"""The outbox relay: publishes what the log says to QStash, checkpointed, never twice-run.

It follows the log like a projection.  For each batch of events it publishes new
dispatches (sources ``api``, ``replay``, ``recovery``; never ``schedule``, whose runs QStash
already owns) with QStash's batch API, cancels the QStash messages of cancelled jobs,
carries schedule events out, then saves the message ids and its checkpoint in one
transaction.  A crash before the checkpoint means the batch is published again: the
deduplication id (job id + dispatch) makes QStash drop the copy, and the host's delivery
rules make a copy that got through anyway run nothing.  It is a checkpointed follower of
the log (``jobstore.follower``): one relay per database works at a time (the election of
its name), others wait to take over; an event it cannot handle stops it there, recorded.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, cast

import httpx
import structlog
from qstash import AsyncQStash
from qstash.errors import DailyMessageLimitExceededError, QStashError, RateLimitExceededError

from jobstore import envelope, follower, job_state, query, tracing
from jobstore.event import RecordedEvent
from jobstore.job_events import JobCancelled, JobDispatched, JobFailed
from jobstore.relay_schedule import FAILURE_CALLBACK_PATH, ScheduleSync
from jobstore.retry import RetryPolicy
from jobstore.schedule_events import (
    ScheduleCreated,
    ScheduleDeleted,
    SchedulePaused,
    ScheduleResumed,
)
from jobstore.store import EventStore

log = structlog.get_logger("jobtrail.relay")
_Q = query.load("jobstore", "relay.sql")
QSTASH_BATCH = 100


_SCHEDULE_EVENTS = (ScheduleCreated, SchedulePaused, ScheduleResumed, ScheduleDeleted)


class RelayCrash(Exception):
    """The relay stopped at a fault-injection point (tests only)."""


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """How the relay publishes: where the host is, batch sizes, timing, fault injection."""

    public_url: str
    name: str = "relay"
    read_batch: int = 500
    idle_poll: float = 5.0
    max_backoff: float = 30.0
    reconcile_interval: float = 300.0
    leader_retry: float = 2.0
    failure_retry: float = 30.0  # the longest wait between tries at an event it stopped on
    fault: str | None = None  # "crash_after_publish": stop before saving the checkpoint


MAX_THROTTLE_WAIT = 600.0
"""The longest wait (s) on one throttled call before asking again (a daily quota may reset
hours later; a call every ten minutes meanwhile is no hot loop)."""


@dataclass
class QStashLimits:
    """How QStash's own limits (429: its burst rate limit or daily quota) held calls back.

    Kept outside the relay, so the count survives a relay's restart; read by the host's
    ``/metrics`` and written into the relay's status report.
    """

    throttled: int = 0
    """429 answers received."""
    unreachable: int = 0
    """Other failures that were retried (network errors, 5xx)."""
    waiting_until: float | None = None
    """While a call waits to be tried again: until when (Unix time)."""
    last_throttle: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The counts and the current wait, as JSON-compatible values."""
        waiting = self.waiting_until
        return {
            "qstash_throttled": self.throttled,
            "qstash_unreachable": self.unreachable,
            "waiting_until": None if waiting is None else _iso(waiting),
            "last_throttle": self.last_throttle,
        }


async def retrying(
    call: Callable[[], Awaitable[Any]], max_backoff: float, limits: QStashLimits | None = None
) -> Any:
    """Run a QStash call until it succeeds or fails permanently; back off meanwhile.

    A 429 (QStash's rate limit or quota) waits at least until the reset time the answer
    gives (up to MAX_THROTTLE_WAIT), else backs off like any transient failure.  Nothing
    is dropped: the call is tried until it gets an answer that is not transient.
    """
    limits = limits if limits is not None else QStashLimits()
    delays = RetryPolicy(first=0.2, cap=max_backoff).delays()
    while True:
        try:
            result = await call()
        except Exception as exc:
            if not is_transient(exc):
                limits.waiting_until = None
                raise
            reset = throttled_for(exc)
            if reset is not None:
                delay = delays.next(at_least=min(reset, MAX_THROTTLE_WAIT))
                limits.throttled += 1
                limits.last_throttle = str(exc)[:300]
                log.warning(
                    "qstash throttled the call; waiting",
                    error=str(exc)[:200],
                    delay=round(delay, 3),
                )
            else:
                delay = delays.next()
                limits.unreachable += 1
                log.warning(
                    "qstash unreachable; backing off", error=str(exc)[:200], delay=round(delay, 3)
                )
            limits.waiting_until = time.time() + delay
            await asyncio.sleep(delay)
        else:
            limits.waiting_until = None
            return result


def is_transient(exc: BaseException) -> bool:
    """Whether a QStash call failure may succeed if tried again (network, 5xx, 429)."""
    if isinstance(exc, httpx.HTTPError | OSError | asyncio.TimeoutError):
        return True
    if throttled_for(exc) is not None:
        return True
    if isinstance(exc, QStashError):
        match = re.search(r"status: (\d{3})", str(exc))
        return match is None or int(match[1]) >= 500
    return False


def throttled_for(exc: BaseException) -> float | None:
    """For a 429 answer: seconds until QStash's limit resets (0 if it did not say); else None.

    The SDK turns a 429 into RateLimitExceededError (burst limit) or
    DailyMessageLimitExceededError (quota), with the ``*-Reset`` header as ``reset``: a
    Unix time in seconds (or milliseconds), read here as a wait from now.
    """
    if isinstance(exc, RateLimitExceededError | DailyMessageLimitExceededError):
        try:
            reset = float(exc.reset or 0)
        except ValueError:
            return 0.0
        if reset > 1e11:  # milliseconds
            reset /= 1000
        if reset > 1e9:  # a point in time
            reset -= time.time()
        return max(reset, 0.0)
    if isinstance(exc, QStashError) and re.search(r"status: 429\b", str(exc)):
        return 0.0
    return None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


class Relay:
    """Publishes dispatches from the event log to QStash (the log is the outbox)."""

    handles: Final = follower.types_of(JobDispatched, JobCancelled, *_SCHEDULE_EVENTS)
    """The event types :meth:`handle` acts on; its follower reads no others' data."""

    def __init__(
        self,
        store: EventStore,
        dsn: str,
        qstash: AsyncQStash,
        config: RelayConfig,
        *,
        limits: QStashLimits | None = None,
    ) -> None:
        self.store = store
        self.dsn = dsn
        self.qstash = qstash
        self.config = config
        self.limits = limits if limits is not None else QStashLimits()
        self.schedules = ScheduleSync(store, qstash, config.public_url)
        self.published = 0
        self._spans = tracing.Publishing()
        self.follower = follower.Follower(
            store,
            config.name,
            self,
            dsn=dsn,
            config=follower.FollowerConfig(
                batch_size=config.read_batch,
                idle_poll=config.idle_poll,
                leader_retry=config.leader_retry,
                failure_retry=config.failure_retry,
            ),
            on_lead=self._reconcile,
            on_idle=self._reconcile_when_due,
            fatal=(RelayCrash,),
        )
        self._next_reconcile = 0.0

    async def run(self) -> None:
        """Publish forever: wait for leadership, reconcile schedules, follow the log."""
        await self.follower.run()

    async def run_until_caught_up(self) -> int:
        """Publish everything in the log up to now, then return the number of events handled."""
        return await self.follower.run_until_caught_up()

    async def reconcile_schedules(self) -> int:
        """Create in QStash the schedules the log has and QStash lacks; return how many."""
        return await self.schedules.reconcile(self._retrying)

    async def _reconcile(self) -> None:
        await self.reconcile_schedules()
        self._next_reconcile = asyncio.get_running_loop().time() + self.config.reconcile_interval

    async def _reconcile_when_due(self) -> None:
        if asyncio.get_running_loop().time() >= self._next_reconcile:
            await self._reconcile()

    async def handle(self, batch: Sequence[RecordedEvent], commit: follower.Commit) -> None:
        """Publish the batch, carry out its cancellations and schedule changes, then commit
        the message ids with the checkpoint (the follower's handler)."""
        to_send = [
            r for r in batch if isinstance(r.event, JobDispatched) and r.event.source != "schedule"
        ]
        dispatches = [cast(JobDispatched, r.event) for r in to_send]
        for r, d in zip(to_send, dispatches, strict=True):  # no-ops unless tracing is on
            self._spans.start(d.job_id, d.dispatch, d.job_type, r.metadata.get(tracing.TRACEPARENT))
        try:
            published = await self._publish_all(dispatches)
        finally:
            self._spans.end()
        for recorded in batch:
            await self._carry_out(recorded)
        if self.config.fault == "crash_after_publish" and published:
            raise RelayCrash("fault injected: published, checkpoint not saved")
        async with commit() as conn:
            if published:
                job_ids, numbers, message_ids = (list(c) for c in zip(*published, strict=True))
                await conn.execute(_Q["save_messages"], job_ids, numbers, message_ids)
        self.published += len(published)

    async def _carry_out(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, JobCancelled):
            await self._cancel(recorded.stream_id.removeprefix("job-"), event.dispatch)
        elif isinstance(event, _SCHEDULE_EVENTS):
            await self.schedules.apply(recorded, self._retrying)

    async def _publish_all(self, dispatches: list[JobDispatched]) -> list[tuple[str, int, str]]:
        saved: list[tuple[str, int, str]] = []
        for nowhere in (d for d in dispatches if d.options.endpoint is None):
            await self._fail(nowhere, "the dispatch names no endpoint", "NoEndpoint", "")
        dispatches = [d for d in dispatches if d.options.endpoint is not None]
        for start in range(0, len(dispatches), QSTASH_BATCH):
            chunk = dispatches[start : start + QSTASH_BATCH]
            requests = [self._request(d) for d in chunk]
            try:
                responses = await self._retrying(
                    lambda r=requests: self.qstash.message.batch_json(r)
                )
            except QStashError as exc:  # a permanent refusal: publish one by one
                log.warning("qstash refused a batch; publishing one by one", error=str(exc))
                saved += await self._publish_singly(chunk)
                continue
            for dispatched, response in zip(chunk, responses, strict=True):
                message_id = getattr(response, "message_id", None) or ""
                saved.append((dispatched.job_id, dispatched.dispatch, message_id))
            log.info("published batch", count=len(chunk))
        return saved

    async def _publish_singly(self, chunk: list[JobDispatched]) -> list[tuple[str, int, str]]:
        saved: list[tuple[str, int, str]] = []
        for dispatched in chunk:
            request = self._request(dispatched)
            try:
                (response,) = await self._retrying(
                    lambda r=request: self.qstash.message.batch_json([r])
                )
            except QStashError as exc:
                await self._fail(dispatched, "QStash refused the message", "QStashError", str(exc))
                continue
            saved.append(
                (dispatched.job_id, dispatched.dispatch, getattr(response, "message_id", ""))
            )
        return saved

    async def _fail(
        self, dispatched: JobDispatched, reason: str, error_type: str, message: str
    ) -> None:
        """Record that this dispatch cannot be published, so it does not wait forever."""
        failed = JobFailed(
            dispatch=dispatched.dispatch,
            reason=reason,
            error_type=error_type,
            error_message=message[:500],
        )
        await self.store.append(job_state.stream_id(dispatched.job_id), [failed])

    def _request(self, dispatched: JobDispatched) -> dict[str, Any]:
        options = dispatched.options
        trace = self._spans.traceparent(dispatched.job_id, dispatched.dispatch)
        headers = dict(options.headers) | ({tracing.TRACEPARENT: trace} if trace else {})
        request: dict[str, Any] = {
            "url": self.config.public_url.rstrip("/") + (options.endpoint or ""),
            "body": envelope.job_body(dispatched, trace),
            "retries": options.qstash_retries,
            "timeout": f"{options.qstash_timeout}s",
            "deduplication_id": f"{dispatched.job_id}-{dispatched.dispatch}",
            "failure_callback": self.config.public_url.rstrip("/") + FAILURE_CALLBACK_PATH,
            "headers": headers,
            "label": dispatched.job_type,
        }
        # The job's own callback is called by the host under its address policy once the
        # outcome is recorded (workers/notification.py); QStash never gets the user's URL.
        if options.flow_control is not None:
            request["flow_control"] = options.flow_control.qstash()
        if options.not_before:  # any dispatch waits for it: a recovery keeps what is left
            request["not_before"] = math.ceil(options.not_before)  # never a moment early
        return request

    async def _cancel(self, job_id: str, dispatch: int) -> None:
        async with self.store.pool.acquire() as conn:
            message_id = await conn.fetchval(_Q["message_of"], job_id, dispatch)
        if not message_id:
            return
        try:
            await self._retrying(partial(self.qstash.message.cancel, message_id))
        except QStashError as exc:  # already delivered, failed or unknown: nothing to stop
            log.info("qstash message not cancelled", job_id=job_id, reason=str(exc)[:200])
        else:
            log.info("qstash message cancelled", job_id=job_id, message_id=message_id)

    async def _retrying(self, call: Any) -> Any:
        return await retrying(call, self.config.max_backoff, self.limits)
