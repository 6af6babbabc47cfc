"""Delivery verification: the ``Upstash-Signature`` JWT, checked before anything else."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from qstash import Receiver
from qstash.errors import SignatureError


class VerificationError(Exception):
    """The request is not a genuine QStash delivery for this URL and body."""


@dataclass(frozen=True)
class Verifier:
    """Checks signatures with the current and next signing keys against the public URL."""

    current_key: str
    next_key: str
    public_url: str
    clock_tolerance: int = 5

    @functools.cached_property
    def receiver(self) -> Receiver:
        """One ``qstash.Receiver`` for every request."""
        return Receiver(self.current_key, self.next_key)

    def url_for(self, raw_path: str) -> str:
        """The exact URL QStash signed: the public base URL plus the request's path/query."""
        return self.public_url.rstrip("/") + raw_path

    def verify(self, signature: str | None, body: bytes, raw_path: str) -> None:
        """Raise VerificationError unless ``signature`` signs ``body`` for this URL."""
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
