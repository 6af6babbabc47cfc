"""One delivery attempt: a signed HTTP request to the destination, reduced to an Outcome."""

from __future__ import annotations

import time

import aiohttp
from multidict import CIMultiDictProxy

from qstash_local import duration, signature
from qstash_local.dlq import Outcome
from qstash_local.message import Message

_RETRY_HINTS = (
    "Retry-After",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-Requests",
    "X-RateLimit-Reset-Tokens",
)
_SKIP_AUTO = frozenset({"Content-Type", "Accept-Encoding"})


def signed_headers(message: Message, *, key: str, retried: int) -> dict[str, str]:
    """Return the §5.1 headers for one attempt, with a freshly minted signature."""
    headers = dict(message.base_headers)
    headers["Upstash-Retried"] = str(retried)
    headers["Upstash-Signature"] = signature.sign(
        key=key,
        url=message.url,
        body_sha=message.body_sha,
        now=int(time.time()),
        jti=signature.new_jti(),
    )
    return headers


async def attempt(
    session: aiohttp.ClientSession, message: Message, *, key: str, limit: aiohttp.ClientTimeout
) -> Outcome:
    """Send ``message`` once; connection errors and timeouts are failed outcomes too."""
    if message.target is None:
        return Outcome(0, {}, b"", error=f"invalid destination url {message.url!r}")
    headers = signed_headers(message, key=key, retried=message.retried)
    # UNVERIFIED choices: the body is sent as-is even for GET (the faithful reading of
    # "we do not modify it"), and a 3xx is not followed: only a 2xx counts as delivered.
    try:
        async with session.request(
            message.spec.method,
            message.target,
            data=message.body,
            headers=headers,
            timeout=limit,
            allow_redirects=False,
            skip_auto_headers=_SKIP_AUTO,
        ) as response:
            body = await response.read()
            return _outcome(response.status, response.headers, body)
    except TimeoutError:
        return Outcome(0, {}, b"", error=f"request timed out after {limit.total}s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Outcome(0, {}, b"", error=f"{type(exc).__name__}: {exc}".strip())


def _outcome(status: int, headers: CIMultiDictProxy[str], body: bytes) -> Outcome:
    grouped: dict[str, list[str]] = {}
    for name, value in headers.items():
        grouped.setdefault(str(name), []).append(value)
    hint = None
    if not 200 <= status < 300:
        hint = _retry_hint(headers)
    non_retryable = (
        status == 489 and headers.get("Upstash-NonRetryable-Error", "").lower() == "true"
    )
    error = None if 200 <= status < 300 else f"destination answered {status}"
    return Outcome(status, grouped, body, error, hint, non_retryable)


def _retry_hint(headers: CIMultiDictProxy[str]) -> float | None:
    now = time.time()
    for name in _RETRY_HINTS:
        value = headers.get(name)
        if value is not None:
            seconds = duration.parse_retry_hint(value, now)
            if seconds is not None:
                return seconds
    return None
