"""Signed session cookies and CSRF tokens: who is signed in, and proof a form came from us.

A session names the API token it was opened with and a fingerprint of that token's
secret, so removing or rotating the token ends its sessions.  The cookie is HttpOnly,
SameSite=Strict, and Secure when the request came over https.  Every state-changing form
carries a CSRF token: an HMAC of the session's nonce (or, before sign-in, of the sign-in
cookie's nonce), compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final

import orjson
from aiohttp import web

import projections

COOKIE: Final = "jobtrail_session"
SIGNIN_COOKIE: Final = "jobtrail_signin"
LIFETIME: Final = 12 * 3600
"""Seconds a session lasts before signing in again."""


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in operator: the token they signed in with, and the session's nonce."""

    token: projections.ApiToken
    nonce: str

    def allows(self, scope: projections.Scope) -> bool:
        """Whether the session's token grants ``scope``."""
        return self.token.allows(scope)


def key_for(tokens: tuple[projections.ApiToken, ...]) -> bytes:
    """The signing key of sessions: derived from every token's secret, so every host with
    the same tokens accepts the same sessions, and new secrets end old sessions."""
    material = "\n".join(sorted(t.secret for t in tokens)).encode()
    return hashlib.blake2b(material, key=b"jobtrail-dashboard-session", digest_size=32).digest()


def _sign(key: bytes, text: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.digest(key, text, "sha256")).decode().rstrip("=")


def _fingerprint(token: projections.ApiToken) -> str:
    return hashlib.sha256(token.secret.encode()).hexdigest()[:16]


def issue(key: bytes, token: projections.ApiToken, now: float | None = None) -> str:
    """A cookie value opening a session for ``token``."""
    issued = int(time.time() if now is None else now)
    body = orjson.dumps([token.name, _fingerprint(token), issued, secrets.token_urlsafe(16)])
    encoded = base64.urlsafe_b64encode(body).decode().rstrip("=")
    return f"{encoded}.{_sign(key, encoded.encode())}"


def read(key: bytes, tokens: tuple[projections.ApiToken, ...], value: str | None) -> Session | None:
    """The session a cookie value proves, or None (forged, expired, or its token gone)."""
    if not value or value.count(".") != 1 or len(value) > 1000:
        return None
    encoded, signature = value.split(".")
    if not hmac.compare_digest(signature, _sign(key, encoded.encode())):
        return None
    try:
        name, fingerprint, issued, nonce = orjson.loads(
            base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        )
    except (ValueError, TypeError):
        return None
    if not isinstance(issued, int) or time.time() - issued > LIFETIME:
        return None
    for token in tokens:
        if token.name == name and hmac.compare_digest(_fingerprint(token), str(fingerprint)):
            return Session(token, str(nonce))
    return None


def csrf_token(key: bytes, nonce: str, purpose: str = "session") -> str:
    """The CSRF token of forms posted within the session (or sign-in) with ``nonce``."""
    return _sign(key, f"csrf:{purpose}:{nonce}".encode())


def check_csrf(key: bytes, nonce: str, given: object, purpose: str = "session") -> bool:
    """Whether ``given`` is the CSRF token of ``nonce``."""
    return isinstance(given, str) and hmac.compare_digest(
        given.encode(), csrf_token(key, nonce, purpose).encode()
    )


def is_https(request: web.Request) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that says so)."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    """Set a dashboard cookie: HttpOnly, SameSite=Strict, Secure behind https."""
    response.set_cookie(
        name,
        value,
        max_age=LIFETIME,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=is_https(request),
    )
