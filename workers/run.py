"""Scheduled runs: QStash confirms a run's message before the host mints its job.

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

from jobstore import envelope
from workers.context import HostContext

log = structlog.get_logger("jobtrail.worker")


class QStashUnavailableError(Exception):
    """QStash could not be asked; the delivery should be retried later."""


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
