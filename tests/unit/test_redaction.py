"""The one redaction rule used by logs, the API and the CLI."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstore import redaction
from jobstore.redaction import REDACTED, TOO_DEEP, redact

SECRET_KEYS = [
    "password",
    "X-API-Key",
    "api_key",
    "apiKey",
    "private_key",
    "signing_key",
    "access_key",
    "session",
    "bearer",
    "ssn",
    "Authorization",
    "resetUrl",
    "reset_url",
    "client_secret",
    "refreshToken",
    "STRIPE_WEBHOOK_SECRET",
    "cookie",
    "session_id",
    "cardNumber",
]
PLAIN_KEYS = ["idempotency_key", "user_id", "job_type", "recipient_name", "possession", "to"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_are_masked_whatever_their_spelling(key: str) -> None:
    assert redact({key: "hunter2"}) == {key: REDACTED}


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert redact({key: "value"}) == {key: "value"}


def test_secrets_inside_text_are_masked() -> None:
    assert redact("https://app.example/reset?user=7&token=abc123") == (
        f"https://app.example/reset?user=7&token={REDACTED}"
    )
    assert redact("login failed: password=hunter2 for ada") == (
        f"login failed: password={REDACTED} for ada"
    )
    assert redact("postgresql://app:s3cret@db/x") == f"postgresql://app:{REDACTED}@db/x"
    assert redact("sent Authorization: Bearer abcdefgh12345678") == (
        f"sent Authorization: Bearer {REDACTED}"
    )


def test_card_numbers_passing_luhn_are_masked_and_others_kept() -> None:
    assert redact("card 4111 1111 1111 1111 declined") == f"card {REDACTED} declined"
    assert redact({"note": "4111-1111-1111-1111"}) == {"note": REDACTED}
    kept = ["order 4111111111111112", "6f0c7a52-3c1e-4d43-9a57-6a1f3f1d2b10", "2026-01-31"]
    for text in kept:
        assert redact(text) == text


def test_nested_at_any_depth_and_too_deep_is_a_marker() -> None:
    deep: object = {"password": "x"}
    for _ in range(redaction.MAX_DEPTH + 5):
        deep = {"a": [deep]}
    text = repr(redact(deep))
    assert "'x'" not in text and TOO_DEEP in text
    shallow = {"a": [{"b": {"headers": {"Authorization": "Basic abc"}}}]}
    assert redact(shallow) == {"a": [{"b": {"headers": {"Authorization": REDACTED}}}]}


def test_log_lines_carry_payload_keys_and_size_not_values() -> None:
    shape = redaction.shape({"to": "ada@example.com", "reset_url": "https://x?token=1"})
    assert shape == {"payload_keys": ["reset_url", "to"], "payload_bytes": 56}


@given(st.uuids())
def test_ids_are_never_taken_for_card_numbers(value: uuid.UUID) -> None:
    """A job id's digits can pass the Luhn check; an id is still never masked."""
    for text in (str(value), f"job-{value}", f"job {value} failed"):
        assert redact(text) == text


def test_a_uuid_whose_leading_digits_pass_luhn_is_kept() -> None:
    text = "29949657-1755-48bd-a8ea-583015cabc0c"  # 29949657175548 passes the Luhn check
    assert redact(text) == text
