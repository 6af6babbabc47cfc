"""Scheduled runs: the host mints a run's job once QStash confirms the run's message.

A scheduled run's body is the same for every run of its schedule, so nothing signed tells
one run from the next; its job id comes from ``Upstash-Message-Id``, which is not signed.
Before a run mints a job, the host asks QStash whether that message exists, belongs to the
schedule the body names and goes to this URL.  A replayed delivery with a made-up message
id is refused; one with the real id maps to the job its first delivery minted.
"""

from __future__ import annotations

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
)
from workers.context import HostContext

log = structlog.get_logger("jobtrail.worker")


class QStashUnavailableError(Exception):
    """QStash could not be asked; the delivery should be retried later."""


async def mint(ctx: HostContext, parsed: envelope.ScheduledRun, message_id: str, url: str) -> str:
    """The id of the run's job: minted (``JobDispatched(source=schedule)``) on first delivery."""
    job_id = parsed.job_id(message_id)
    stream = job_state.stream_id(job_id)
    if await ctx.store.stream_version(stream) > 0:
        return job_id  # minted by an earlier delivery of the same run
    await confirm(ctx, parsed, message_id, url)
    try:
        options = DispatchOptions.for_job(ctx.registry.get(parsed.type).config)
    except JobError:  # an unknown type: the job is minted, then fails with its reason
        options = DispatchOptions()
    dispatched = job_events.JobDispatched(
        job_id=job_id,
        dispatch=1,
        job_type=parsed.type,
        payload=parsed.payload,
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
