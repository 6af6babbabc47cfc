"""Calling a job's own callbacks (``callback``, ``failure_callback``) once its outcome is recorded.

The host makes these calls itself, never QStash, so that the address policy applies to
them exactly as to process-webhook targets (:mod:`jobstore.address`): the URL's scheme,
port and literal address are checked, its host is resolved once and every address
checked, the connection is pinned to those addresses, redirects are not followed and no
proxy is taken from the environment.  The body is JSON, signed like a webhook
(``X-Jobtrail-Signature``, :mod:`workers.handlers.webhook`), and carries a notification
id that is the same every time one outcome is notified (``X-Jobtrail-Notification-Id``
and ``Idempotency-Key``: ``<job id>:<dispatch>:<kind>``), so a receiver can drop repeats.

A callback that fails or is refused is logged, never retried here, and never changes
the job's recorded outcome.  URLs are logged without their query string or credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
import structlog
import yarl

from jobstore import AddressPolicy, JobState, NonRetryableJobError
from workers.context import HostContext
from workers.handlers import HandlerError, target, webhook

Kind = Literal["completed", "failed"]
TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5, sock_read=10)
NOTIFICATION_ID_HEADER = "X-Jobtrail-Notification-Id"
log = structlog.get_logger("jobtrail.notification")


def notification_id(job_id: str, dispatch: int, kind: Kind) -> str:
    """The id of the notification that ``dispatch`` of ``job_id`` ended as ``kind``."""
    return f"{job_id}:{dispatch}:{kind}"


async def call_callback(
    ctx: HostContext,
    url: str,
    body: Mapping[str, Any],
    kind: Kind,
    *,
    notification: str,
    lookup: target.Lookup = target.getaddrinfo_lookup,
) -> int | None:
    """POST ``body`` to ``url`` under the address policy; the answer's status, or None.

    Never raises for the callback's own failure (refused, unreachable, an error answer):
    that is logged, and the job's outcome stands.
    """
    parsed = yarl.URL(url)
    where = target.display_url(parsed)
    policy = AddressPolicy.from_settings(ctx.settings)
    try:
        raw_body = webhook.encode_body(body)
        headers = {
            **webhook.signed_headers(ctx.settings, notification, f"job.{kind}", raw_body),
            NOTIFICATION_ID_HEADER: notification,
        }
        connector = await target.pinned_connector(parsed, policy, lookup)
        async with (
            webhook.default_session(connector) as session,
            session.post(
                parsed, data=raw_body, headers=headers, allow_redirects=False, timeout=TIMEOUT
            ) as response,
        ):
            status = response.status
    except (HandlerError, NonRetryableJobError) as exc:
        log.warning("job callback refused", kind=kind, url=where, reason=str(exc))
        return None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning(
            "job callback failed", kind=kind, url=where, error=f"{type(exc).__name__}: {exc}"
        )
        return None
    log.info("job callback called", kind=kind, url=where, status=status)
    return status


async def job_completed(
    ctx: HostContext, state: JobState, dispatch: int, attempt: int, duration: float, result: Any
) -> int | None:
    """Call the job's success ``callback``, if it has one, after ``JobCompleted`` is recorded."""
    url = state.options.callback
    if not url:
        return None
    body = {
        "job_id": state.job_id,
        "job_type": state.job_type,
        "dispatch": dispatch,
        "attempt": attempt,
        "status": "completed",
        "duration_seconds": round(duration, 6),
        "result": result,
    }
    return await call_callback(
        ctx,
        str(url),
        body,
        "completed",
        notification=notification_id(state.job_id, dispatch, "completed"),
    )
