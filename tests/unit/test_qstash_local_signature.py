"""The Upstash-Signature JWT: the reference's test vector and qstash.Receiver's verdict."""

from __future__ import annotations

import time

import pytest
from qstash import Receiver
from qstash.errors import SignatureError

from qstash_local import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY, signature

VECTOR = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJpc3MiOiJVcHN0YXNoIiwic3ViIjoiaHR0cDovLzEyNy4wLjAuMTo5MDAwL2hvb2siLCJleHAiOjE3MDAwMDAz"
    "MDAsIm5iZiI6MTcwMDAwMDAwMCwiaWF0IjoxNzAwMDAwMDAwLCJqdGkiOiJqd3RfdGVzdHZlY3RvcjAwMDAwMDAw"
    "MDAwMDAwMDAiLCJib2R5IjoiazZJNWNha1U1ZXJMOEtqU1VWVE5vd25Ed2NjdnU1a1UxSHhnODh0b0ZZZz0ifQ."
    "bFejiSw4gfnnzWWArciwEdzhmZpO8oTZMIDUTlRKGpU"
)


def test_body_hash_matches_the_reference_vectors() -> None:
    assert signature.body_hash(b"") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="
    assert (
        signature.body_hash(b'{"hello":"world"}') == "k6I5cakU5erL8KjSUVTNownDwccvu5kU1Hxg88toFYg="
    )


def test_token_is_byte_identical_to_the_reference_test_vector() -> None:
    token = signature.sign(
        key=DEV_CURRENT_SIGNING_KEY,
        url="http://127.0.0.1:9000/hook",
        body_sha=signature.body_hash(b'{"hello":"world"}'),
        now=1700000000,
        jti="jwt_testvector0000000000000000",
    )
    assert token == VECTOR


def _fresh(key: str, url: str, body: bytes) -> str:
    return signature.sign(
        key=key,
        url=url,
        body_sha=signature.body_hash(body),
        now=int(time.time()),
        jti=signature.new_jti(),
    )


def test_receiver_accepts_a_fresh_token_signed_with_the_current_or_next_key() -> None:
    receiver = Receiver(DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY)
    for key in (DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY):
        token = _fresh(key, "http://h/x?y=1", b"body")
        receiver.verify(signature=token, body="body", url="http://h/x?y=1")


@pytest.mark.parametrize(
    ("url", "body", "why"),
    [("http://h/other", "body", "subject"), ("http://h/x", "tampered", "body hash")],
)
def test_receiver_rejects_a_token_for_another_url_or_body(url: str, body: str, why: str) -> None:
    token = _fresh(DEV_CURRENT_SIGNING_KEY, "http://h/x", b"body")
    with pytest.raises(SignatureError):
        Receiver(DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY).verify(
            signature=token, body=body, url=url
        )


def test_receiver_rejects_a_token_from_an_unknown_key() -> None:
    token = _fresh(signature.new_signing_key(), "http://h/x", b"")
    with pytest.raises(SignatureError):
        Receiver(DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY).verify(
            signature=token, body="", url="http://h/x"
        )


def test_new_keys_and_jwt_ids_have_qstash_shapes_and_differ() -> None:
    keys = {signature.new_signing_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(k.startswith("sig_") and len(k) == 32 for k in keys)
    assert signature.new_jti() != signature.new_jti()
