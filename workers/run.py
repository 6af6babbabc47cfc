"""Scheduled runs: the host mints a run's job once QStash confirms the run's message.

A scheduled run's body is the same for every run of its schedule, so nothing signed tells
one run from the next; its job id comes from ``Upstash-Message-Id``, which is not signed.
Before a run mints a job, the host asks QStash whether that message exists, belongs to the
schedule the body names and goes to this URL.  A replayed delivery with a made-up message
id is refused; one with the real id maps to the job its first delivery minted.

A schedule whose job type declares personal fields sends them sealed with the schedule's
data key: the host opens them with that key before minting the job, whose dispatch then
seals them with the job's own key (so erasing that job alone erases its copy).  Once the
schedule's key is erased, a run that is still under way mints nothing and is refused for
good (489, non-retryable).
"""

from __future__ import annotations

from typing import Any

import httpx
import structlog
from qstash.errors import QStashError

from jobstore import (
    NO_STREAM,
    ConcurrencyError,
    DispatchOptions,
    JobError,
    envelope,
    job_events,
    job_state,
    keyring,
    protect,
)
from workers.context import HostContext

log = structlog.get_logger("jobtrail.worker")


class QStashUnavailableError(Exception):
    """QStash could not be asked; the delivery should be retried later."""


class ScheduleErasedError(envelope.EnvelopeError):
    """The run's schedule had its personal data erased: the run mints no job."""


async def mint(ctx: HostContext, parsed: envelope.ScheduledRun, message_id: str, url: str) -> str:
    """The id of the run's job: minted (``JobDispatched(source=schedule)``) on first delivery."""
    job_id = parsed.job_id(message_id)
    stream = job_state.stream_id(job_id)
    if await ctx.store.stream_version(stream) > 0:
        return job_id  # minted by an earlier delivery of the same run
    await confirm(ctx, parsed, message_id, url)
    payload = await opened(ctx, parsed)
    try:
        options = DispatchOptions.for_job(ctx.registry.get(parsed.type).config)
    except JobError:  # an unknown type: the job is minted, then fails with its reason
        options = DispatchOptions()
    dispatched = job_events.JobDispatched(
        job_id=job_id,
        dispatch=1,
        job_type=parsed.type,
        payload=payload,
        metadata={**parsed.metadata, "schedule_id": parsed.schedule_id},
        options=options,
        source="schedule",
        reason=f"scheduled run of {parsed.schedule_id}",
    )
    try:
        await ctx.store.append(stream, [dispatched], NO_STREAM)
        log.info("scheduled run minted a job", job_id=job_id, schedule_id=parsed.schedule_id)
    except ConcurrencyError:
        pass  # a duplicate delivery of the same run minted it a moment ago
    return job_id


async def opened(ctx: HostContext, parsed: envelope.ScheduledRun) -> dict[str, Any]:
    """The run's payload with the values its schedule's key sealed opened.

    ScheduleErasedError when that key was erased, or when a sealed value is not the
    schedule's own (a run carries only what its schedule sealed).
    """
    kids = protect.kids_in(parsed.payload)
    if not kids:
        return parsed.payload
    own = keyring.schedule_key_id(parsed.schedule_id)
    plain = None
    if kids == {own}:
        plain = protect.opened(parsed.payload, await ctx.store.keys.keys(kids))
    if plain is None:
        raise ScheduleErasedError(
            f"schedule {parsed.schedule_id!r:.80}'s personal data was erased (or its run "
            "carries data sealed by another key): the run mints no job"
        )
    return plain


async def confirm(
    ctx: HostContext, parsed: envelope.ScheduledRun, message_id: str, url: str
) -> None:
    """Return when QStash confirms the run; EnvelopeError when it denies it."""
    if ctx.qstash is None:
        raise envelope.EnvelopeError("scheduled runs need a QStash client to confirm them")
    try:
        message = await ctx.qstash.message.get(message_id)
    except QStashError as exc:
        if "404" in str(exc) or "not found" in str(exc).lower():
            raise envelope.EnvelopeError(
                f"QStash has no message {message_id!r:.80}; the run is not confirmed"
            ) from None
        raise QStashUnavailableError(f"QStash answered with an error: {exc}") from None
    except (httpx.HTTPError, OSError) as exc:
        raise QStashUnavailableError(f"QStash is unreachable: {exc}") from None
    if message.schedule_id != parsed.schedule_id or message.url != url:
        raise envelope.EnvelopeError(
            f"QStash's message {message_id!r:.80} is not a run of schedule "
            f"{parsed.schedule_id!r:.80} to this URL"
        )
    log.debug("scheduled run confirmed by QStash", message_id=message_id)
