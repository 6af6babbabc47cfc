"""Delivery verification: the ``Upstash-Signature`` JWT, checked before anything else."""

from __future__ import annotations

import base64
import binascii
import functools
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from qstash import Receiver
from qstash.errors import SignatureError

from jobstore import DeliveryToken, Settings


class VerificationError(Exception):
    """The request is not a genuine QStash delivery for this URL and body."""


REFUSED = "signature verification failed"
"""The one text a refused request gets back: the detail goes to the log only."""


@dataclass(frozen=True)
class Verifier:
    """Checks signatures with the current and next signing keys against the public URL."""

    current_key: str
    next_key: str
    public_url: str
    clock_tolerance: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> Verifier:
        """The verifier of a host configured by ``settings`` (its keys and public URL)."""
        return cls(
            settings.qstash_current_signing_key.get_secret_value(),
            settings.qstash_next_signing_key.get_secret_value(),
            settings.public_url,
        )

    @functools.cached_property
    def receiver(self) -> Receiver:
        """One ``qstash.Receiver`` for every request."""
        return Receiver(self.current_key, self.next_key)

    def url_for(self, raw_path: str) -> str:
        """The exact URL QStash signed: the public base URL plus the request's path/query."""
        return self.public_url.rstrip("/") + raw_path

    def verify(self, signature: str | None, body: bytes, raw_path: str) -> DeliveryToken:
        """The token's identity; VerificationError unless it signs ``body`` for this URL."""
        if not signature:
            raise VerificationError("missing Upstash-Signature header")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise VerificationError("body is not UTF-8, so it cannot be verified") from None
        try:
            self.receiver.verify(
                signature=signature,
                body=text,
                url=self.url_for(raw_path),
                clock_tolerance=self.clock_tolerance,
            )
        except SignatureError as exc:
            raise VerificationError(str(exc)) from None
        except Exception as exc:  # a malformed token can fail inside the JWT library
            raise VerificationError(f"unreadable signature: {type(exc).__name__}") from None
        return _identity(signature)


def _identity(signature: str) -> DeliveryToken:
    """The ``jti`` and ``exp`` claims of a token whose signature was just verified."""
    try:
        segment = signature.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        token_id, expires = claims["jti"], claims["exp"]
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error):
        raise VerificationError("the token has no jti or exp claim") from None
    if not isinstance(token_id, str) or not 0 < len(token_id) <= 200:
        raise VerificationError("the token's jti must be a string of 1 to 200 characters")
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise VerificationError("the token's exp claim must be a number")
    return DeliveryToken(token_id, datetime.fromtimestamp(expires, UTC))
