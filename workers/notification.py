"""The host's notification endpoint: it calls a job's own callback once QStash delivers.

``jobstore.notifier`` follows the log and publishes a notification for each outcome a job
asked to hear about; QStash delivers it, signed, to ``NOTIFY_PATH`` here, and the host
calls the job's ``callback`` / ``failure_callback`` itself, so the address policy applies
exactly as to process-webhook targets (:mod:`jobstore.address`): the URL's scheme, port
and literal address are checked, its host is resolved once and every address checked,
the connection is pinned to those addresses, redirects are not followed and no proxy is
taken from the environment.  The body is JSON, signed like a webhook
(``X-Jobtrail-Signature``, :mod:`workers.handlers.webhook`), and carries a notification id
that is the same on every delivery of one outcome (``X-Jobtrail-Notification-Id`` and
``Idempotency-Key``: ``<job id>:<dispatch>:<outcome>``), so a receiver can drop repeats.

A receiver that answers an error or cannot be reached makes this endpoint answer 500,
and QStash tries again (at least once, never lost).  A URL the policy refuses is final
(489).  URLs are logged without their query string or credentials.  The notifier sends a
page's notifications together in one message (a bundle, :mod:`jobstore.notifier`): each
is called and recorded as if alone, the bundle is answered 500 while any call in it did
not settle, and a repeated delivery calls only those the log does not show settled.

Connections to receivers are kept alive between calls (:class:`CallbackSessions`): every
call still checks its URL and resolves and checks its host, and reuses a connection only
to exactly the addresses that check passed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
import orjson
import structlog
import yarl
from aiohttp import web

import jobstore
from jobstore import (
    AddressPolicy,
    JobstoreError,
    NonRetryableJobError,
    job_events,
    job_state,
    notifier,
)
from workers.context import HOST, HostContext
from workers.decision import Answer
from workers.handlers import HandlerError, target, webhook
from workers.verification import REFUSED, VerificationError
from workers.worker import respond

Kind = Literal["completed", "failed"]
Called = int | Literal["refused", "unreachable"]
"""The receiver's status, or why the call was not answered."""
TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5, sock_read=10)
NOTIFICATION_ID_HEADER = "X-Jobtrail-Notification-Id"
SESSIONS_KEPT = 64
"""Receivers (URL scheme, host, port and checked addresses) a host keeps connections to."""
log = structlog.get_logger("jobtrail.notification")
Target = tuple[str, str, int, tuple[str, ...]]


class CallbackSessions:
    """Keep-alive sessions to callback receivers, one per target and its checked addresses.

    A session is pinned to the addresses its target resolved to when it was made
    (:class:`target.PinnedResolver`), and is reused only by a call whose own check
    resolved the same host to the same addresses: the policy applies to every call, a
    connection kept alive reaches nothing it did not pass.  Past ``size`` targets the
    least recently used session is closed, once calls it may still carry are over.
    """

    def __init__(self, size: int = SESSIONS_KEPT) -> None:
        self._size = size
        self._sessions: OrderedDict[Target, aiohttp.ClientSession] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    async def session_for(
        self, url: yarl.URL, policy: AddressPolicy, lookup: target.Lookup
    ) -> aiohttp.ClientSession:
        """A session that reaches only ``url``'s host, at addresses ``policy`` passed now."""
        host, port = target.check_url(url, policy)
        addresses = await target.resolve_checked(host, port, policy=policy, lookup=lookup)
        key = (url.scheme, host.rstrip(".").lower(), port, tuple(addresses))
        session = self._sessions.get(key)
        if session is not None and not session.closed:
            self._sessions.move_to_end(key)
            return session
        connector = aiohttp.TCPConnector(
            resolver=target.PinnedResolver(host, addresses), use_dns_cache=False
        )
        self._sessions[key] = session = webhook.default_session(connector)
        while len(self._sessions) > self._size:
            _, old = self._sessions.popitem(last=False)
            closing = asyncio.create_task(_close_after(old, TIMEOUT.total or 0))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        return session

    async def close(self) -> None:
        """Close every session (the host is stopping)."""
        for closing in list(self._closing):
            closing.cancel()
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            await session.close()


async def _close_after(session: aiohttp.ClientSession, seconds: float) -> None:
    """Close ``session`` once a call started on it before now has surely ended."""
    try:
        await asyncio.sleep(seconds)
    finally:
        await session.close()


SESSIONS: Final = web.AppKey("callback_sessions", CallbackSessions)


def mount(app: web.Application) -> None:
    """Add the notification endpoint to ``app``, with its callback sessions."""
    app.router.add_post(jobstore.envelope.NOTIFY_PATH, notify)
    app.router.add_post(notifier.BUNDLE_PATH, notify)
    app.cleanup_ctx.append(_sessions)


async def _sessions(app: web.Application) -> AsyncIterator[None]:
    app[SESSIONS] = sessions = CallbackSessions()
    try:
        yield
    finally:
        await sessions.close()


async def call_callback(
    ctx: HostContext,
    sessions: CallbackSessions,
    url: str,
    body: Mapping[str, Any],
    kind: Kind,
    *,
    notification: str,
    lookup: target.Lookup = target.getaddrinfo_lookup,
) -> Called:
    """POST ``body`` to ``url`` under the address policy; the answer's status, or why not.

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
        session = await sessions.session_for(parsed, policy, lookup)
        async with session.post(
            parsed, data=raw_body, headers=headers, allow_redirects=False, timeout=TIMEOUT
        ) as response:
            status = response.status
    except (HandlerError, NonRetryableJobError) as exc:
        log.warning("job callback refused", kind=kind, url=where, reason=str(exc))
        return "refused"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning(
            "job callback failed", kind=kind, url=where, error=f"{type(exc).__name__}: {exc}"
        )
        return "unreachable"
    log.info("job callback called", kind=kind, url=where, status=status)
    return status


async def notify(request: web.Request) -> web.Response:
    """``POST NOTIFY_PATH`` (and ``BUNDLE_PATH``): QStash delivers a notification, or a
    bundle of them; call each job's callback.

    A bundle (``{"notifications": [...]}``, :mod:`jobstore.notifier`) is answered 200 when
    every call in it settled, else 500 and QStash delivers it again: then the calls the
    log shows settled are not made again.  A malformed notification in a bundle is logged
    and left out (as a lone one is answered 489).
    """
    ctx = request.app[HOST]
    body = await request.read()
    try:
        ctx.verifier.verify(request.headers.get("Upstash-Signature"), body, request.raw_path)
    except VerificationError as exc:
        log.warning("notification refused: bad signature", reason=str(exc))
        return respond(Answer(401, REFUSED))
    try:
        message = orjson.loads(body)
        bundled = isinstance(message, dict) and "notifications" in message
        items = message["notifications"] if bundled else [message]
        if not isinstance(items, list):
            raise TypeError("notifications is not a list")
    except (orjson.JSONDecodeError, TypeError) as exc:
        log.warning("signed notification is malformed", reason=str(exc))
        return respond(Answer(489, "not a jobtrail notification", non_retryable=True))
    notes = [n for item in items if (n := _parse(item)) is not None]
    sessions = request.app[SESSIONS]
    if not bundled:
        if not notes:
            return respond(Answer(489, "not a jobtrail notification", non_retryable=True))
        return respond(_answer(await _deliver(ctx, sessions, notes[0])))
    done: set[str] = set()
    if request.headers.get("Upstash-Retried", "") != "0":  # a repeat: skip what settled
        done = await notifier.settled(ctx.store, [(n.job_id, n.nid) for n in notes], SETTLED)
    # All at once (a bundle holds at most notifier.BUNDLE): the answer waits for the slowest
    # call only, at most TIMEOUT (a lone notification's answer waits as long).
    statuses = await asyncio.gather(
        *(_deliver(ctx, sessions, n) for n in notes if n.nid not in done)
    )
    outcomes = [_outcome(status) for status in statuses]
    again = sum(1 for outcome in outcomes if outcome not in SETTLED)
    if again:
        return respond(
            Answer(500, f"{again} of {len(notes)} callbacks failed; QStash will try them again")
        )
    return respond(Answer(200, f"{len(outcomes)} callbacks called, {len(done)} settled before"))


@dataclass(frozen=True, slots=True)
class Note:
    """One notification: the callback's URL, the outcome, its id and the job's details."""

    url: str
    kind: Kind
    nid: str
    job: Mapping[str, Any]
    job_id: str


def _parse(item: Any) -> Note | None:
    """The notification ``item`` carries, or None (logged) if it is malformed."""
    try:
        url, kind, nid, job = item["url"], item["kind"], item["notification_id"], item["job"]
        if kind not in ("completed", "failed") or not isinstance(job, dict):
            raise ValueError(f"unknown notification kind {kind!r}")
        return Note(str(url), kind, str(nid), job, str(job["job_id"]))
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("signed notification is malformed", reason=str(exc))
        return None


async def _deliver(ctx: HostContext, sessions: CallbackSessions, note: Note) -> Called:
    """Call the job's callback about ``note``, count it and record it in the job's history."""
    # The job's owner gets its result and errors opened, as its handler did ([erased] once erased).
    opened = await ctx.store.keys.reveal({"notification_id": note.nid, **note.job})
    status = await call_callback(ctx, sessions, note.url, opened, note.kind, notification=note.nid)
    ctx.metrics.notifications.labels(note.kind, _outcome(status)).inc()
    await _record(ctx, note.job, note.kind, note.nid, note.url, status)
    return status


async def _record(
    ctx: HostContext, job: Mapping[str, Any], kind: Kind, nid: str, url: str, status: Called
) -> None:
    """Append the call to the job's history (``JobNotified``); a failure here is only logged."""
    try:
        where = target.display_url(yarl.URL(url))
        event = job_events.JobNotified(
            dispatch=int(job["dispatch"]),
            kind=kind,
            notification_id=nid,
            url=where,
            result=_outcome(status),
            status=status if isinstance(status, int) else None,
        )
        await ctx.store.append(job_state.stream_id(str(job["job_id"])), [event])
    except (KeyError, TypeError, ValueError, JobstoreError) as exc:
        log.warning("notification not recorded in the job's history", error=str(exc)[:300])


SETTLED: Final = ("delivered", "rejected", "refused")
"""The outcomes (``JobNotified.result``) after which QStash is not asked to try again."""


def _outcome(status: Called) -> str:
    if isinstance(status, str):
        return status
    if 200 <= status < 300:
        return "delivered"
    return "rejected" if _final(status) else "error"


def _final(status: int) -> bool:
    """A redirect (never followed) or a client error other than 408/429 will not change."""
    return 300 <= status < 500 and status not in (408, 429)


def _answer(status: Called) -> Answer:
    if status == "refused":
        return Answer(489, "the callback URL is refused by the address policy", True)
    if status == "unreachable":
        return Answer(500, "the callback could not be reached; QStash will try again")
    if 200 <= status < 300:
        return Answer(200, f"callback answered {status}")
    if _final(status):
        return Answer(489, f"callback answered {status}; not tried again", True)
    return Answer(500, f"callback answered {status}; QStash will try again")
