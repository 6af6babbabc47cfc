"""process-webhook: POST a job's JSON body to its URL, signed so the receiver can trust it.

Every request carries these headers (the payload's own headers cannot replace them):

- ``Content-Type: application/json``
- ``Idempotency-Key: <job id>:<dispatch>``: the same for every attempt of one dispatch,
  so the receiver can drop a repeated delivery.
- ``X-Jobtrail-Event: <event>``
- ``X-Jobtrail-Timestamp: <unix seconds>``
- ``X-Jobtrail-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is the lowercase
  hex HMAC-SHA256, keyed with the shared secret (``JOBTRAIL_WEBHOOK_SECRET``), of the
  UTF-8 bytes ``f"{t}.{raw_body}"``, ``raw_body`` being the request body exactly as sent.

To verify, a receiver splits the header on ``,`` and ``=``, recomputes the HMAC over
``t``, a dot and the raw body it received, compares it with ``v1`` in constant time, and
rejects a ``t`` too far from its own clock (five minutes is usual) to stop replays;
:func:`verify_signature` does exactly that.

A 2xx answer completes the job.  5xx, 408, 429 and network errors are retried; any other
answer (other 4xx, a redirect, which is never followed) fails the job at once.  Targets
on loopback, private, link-local and other non-public addresses are refused unless
``JOBTRAIL_WEBHOOK_ALLOW_PRIVATE`` is set, and so are ports outside
``JOBTRAIL_WEBHOOK_PORTS`` (80 and 443 by default); see :mod:`jobstore.address`.
The job's own callbacks are signed the same way (:mod:`workers.notification`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import structlog
import yarl

from jobstore import AddressPolicy, BaseJob, NonRetryableJobError, Settings, payloads
from workers.handlers import error, target

WebhookHandler = Callable[[payloads.ProcessWebhookPayload, BaseJob], Awaitable[dict[str, int]]]
SessionFactory = Callable[[aiohttp.TCPConnector], aiohttp.ClientSession]
"""Build the session for one delivery around jobtrail's guarded connector."""

TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10, sock_read=20)
RETRYABLE_STATUSES = frozenset({408, 429})
DEFAULT_TOLERANCE_SECONDS = 300
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "transfer-encoding", "host", "connection"}
    | {"idempotency-key", "x-jobtrail-event", "x-jobtrail-timestamp", "x-jobtrail-signature"}
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
log = structlog.get_logger(__name__)


def sign(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The ``X-Jobtrail-Signature`` value for ``raw_body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + raw_body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str,
    header: str,
    raw_body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid, recent signature of ``raw_body`` (the receiver's check)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, raw_body).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def build_headers(
    settings: Settings, payload: payloads.ProcessWebhookPayload, job: BaseJob, raw_body: bytes
) -> dict[str, str]:
    """The request headers: the payload's own, then jobtrail's signed ones."""
    _check_custom_headers(payload.headers)
    return {
        **payload.headers,
        **signed_headers(settings, job.idempotency_key, payload.event, raw_body),
    }


def signed_headers(
    settings: Settings, idempotency_key: str, event: str, raw_body: bytes
) -> dict[str, str]:
    """jobtrail's own headers of a signed JSON request (see the module docstring)."""
    timestamp = int(time.time())
    secret = settings.webhook_signing_secret.get_secret_value()
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key,
        "X-Jobtrail-Event": event,
        "X-Jobtrail-Timestamp": str(timestamp),
        "X-Jobtrail-Signature": sign(secret, timestamp, raw_body),
    }


def _check_custom_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise NonRetryableJobError(f"webhook header name {name!r} is not a valid HTTP token")
        if name.lower() in RESERVED_HEADERS:
            raise NonRetryableJobError(
                f"webhook header {name!r} is set by jobtrail and cannot be overridden; "
                f"reserved: {', '.join(sorted(RESERVED_HEADERS))}"
            )
        if any(c in value for c in "\r\n\x00"):
            raise NonRetryableJobError(f"webhook header {name!r} has a line break or NUL")


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The JSON request body (compact, UTF-8); a body JSON cannot hold is refused."""
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise NonRetryableJobError(f"webhook body is not valid JSON: {exc}") from exc


def default_session(connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
    """A session on ``connector`` with bounded timeouts, no cookies and no proxy from env."""
    return aiohttp.ClientSession(
        connector=connector,
        timeout=TIMEOUT,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def _outcome(url: yarl.URL, status: int, location: str | None) -> None:
    """Raise the failure a non-2xx ``status`` means: retryable or not."""
    where = target.display_url(url)
    if 200 <= status < 300:
        return
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise error.WebhookDeliveryError(f"webhook {where} answered {status}", status)
    if 300 <= status < 400:
        raise NonRetryableJobError(
            f"webhook {where} answered {status}, a redirect to {location!r}; redirects are "
            "never followed (they could lead to a private address): use the final URL"
        )
    raise NonRetryableJobError(
        f"webhook {where} answered {status}; only 2xx counts as delivered, and a retry "
        "would get the same answer"
    )


def webhook_handler(
    settings: Settings,
    session_factory: SessionFactory | None = None,
    *,
    lookup: target.Lookup = target.getaddrinfo_lookup,
) -> WebhookHandler:
    """The process-webhook handler: check the target, POST the signed body, return the status.

    ``session_factory`` wraps the guarded connector in a session (to add tracing, say);
    ``lookup`` replaces the DNS resolution.
    """
    make_session = session_factory or default_session
    policy = AddressPolicy.from_settings(settings)

    async def process_webhook(
        payload: payloads.ProcessWebhookPayload, job: BaseJob
    ) -> dict[str, int]:
        url = yarl.URL(str(payload.url))
        target.check_url(url, policy)
        raw_body = encode_body(payload.body)
        headers = build_headers(settings, payload, job, raw_body)
        connector = await target.pinned_connector(url, policy, lookup)
        status = await _post(make_session(connector), url, raw_body, headers)
        log.info(
            "webhook delivered",
            url=target.display_url(url),
            status=status,
            webhook_event=payload.event,
        )
        return {"status": status}

    return process_webhook


async def _post(
    session: aiohttp.ClientSession, url: yarl.URL, raw_body: bytes, headers: dict[str, str]
) -> int:
    try:
        async with (
            session,
            session.post(
                url, data=raw_body, headers=headers, allow_redirects=False, timeout=TIMEOUT
            ) as resp,
        ):
            _outcome(url, resp.status, resp.headers.get("Location"))
            return resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        where = target.display_url(url)
        raise error.WebhookDeliveryError(
            f"could not deliver webhook to {where}: {type(exc).__name__}: {exc}"
        ) from exc
