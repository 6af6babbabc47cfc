"""The ``Upstash-Signature`` JWT that signs every delivery (protocol §5.2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import orjson

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
TOKEN_LIFETIME_S = 300


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def body_hash(body: bytes) -> str:
    """Return base64url(sha256(body)) with its ``=`` padding, as QStash's docs show it."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()


def new_jti() -> str:
    """Return a fresh, unique JWT id such as ``jwt_...``."""
    return "jwt_" + secrets.token_urlsafe(18)


def sign(*, key: str, url: str, body_sha: str, now: int, jti: str) -> str:
    """Mint an HS256 JWT for one request to ``url``, keyed by the UTF-8 of the whole key.

    The claims keep QStash's order (iss, sub, exp, nbf, iat, jti, body) in compact JSON
    (orjson), so the token is byte-identical to the reference's test vector. ``aud`` is left out:
    PyJWT rejects any non-empty audience when the receiver gives none.
    """
    claims = {
        "iss": "Upstash",
        "sub": url,
        "exp": now + TOKEN_LIFETIME_S,
        "nbf": now,
        "iat": now,
        "jti": jti,
        "body": body_sha,
    }
    payload = _b64url(orjson.dumps(claims))
    signing_input = _HEADER + b"." + payload
    digest = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64url(digest)).decode()


def new_signing_key() -> str:
    """Return a fresh signing key in QStash's shape: ``sig_`` and 28 base58 characters.

    UNVERIFIED: the alphabet; the published keys only look like base58.
    """
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    return "sig_" + "".join(secrets.choice(alphabet) for _ in range(28))
