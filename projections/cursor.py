"""Keyset cursors: an opaque, signed token for "the page after this row, of this filter".

The token carries the last row's (created_at, job_id) and the filter's fingerprint, and
an HMAC over both; a token that was changed, cut, or issued for another filter is an
InvalidCursorError, never a wrong page or a server error.  The HTTP API keys the HMAC
with a secret derived from its bearer token; in-process callers may use the default key,
which guards against corruption rather than forgery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from projections import errors

DEFAULT_KEY: Final = b"jobtrail keyset cursor v1"
MAX_LENGTH: Final = 300
_MAC_BYTES: Final = 16
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INVALID: Final = "not a cursor this server issued, or it was changed; start again without one"


def key_from_secret(secret: str) -> bytes:
    """A cursor key derived from a secret (e.g. the API's bearer token)."""
    return hmac.new(secret.encode(), b"jobtrail cursor key", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last row's sort key."""

    created_at: datetime
    job_id: str


def encode(key: bytes, position: Position, filter_digest: str) -> str:
    """The token for the page after ``position`` of the filter with ``filter_digest``."""
    micros = (position.created_at - _EPOCH) // timedelta(microseconds=1)
    body = orjson.dumps([micros, position.job_id, filter_digest])
    mac = hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode()


def decode(key: bytes, token: str, filter_digest: str) -> Position:
    """The position in ``token``; InvalidCursorError unless it is intact and for this filter."""
    if not token or len(token) > MAX_LENGTH:
        raise errors.InvalidCursorError(f"must be 1 to {MAX_LENGTH} characters; {_INVALID}")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise errors.InvalidCursorError(_INVALID) from None
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    expected = hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]
    if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
        raise errors.InvalidCursorError(_INVALID)
    micros, job_id, digest = orjson.loads(body)
    if digest != filter_digest:
        raise errors.InvalidCursorError(
            "belongs to a list with other filters; start again without a cursor"
        )
    return Position(_EPOCH + timedelta(microseconds=micros), job_id)
