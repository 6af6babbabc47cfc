"""The sealed-value format, field declarations and log masking (pure: no database)."""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Any

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

import jobstore
from jobstore import job_events, keyring, payloads, protect, redaction

KID = str(uuid.uuid4())


def _key() -> AESGCM:
    return AESGCM(os.urandom(32))


def test_built_in_types_declare_their_personal_fields() -> None:
    assert protect.personal_fields(payloads.SendEmailPayload) == {"to", "data"}
    assert protect.personal_fields(payloads.ProcessWebhookPayload) == {"body"}
    assert protect.personal_fields(payloads.ProcessStripeWebhookPayload) == {"payload"}
    assert protect.personal_fields(payloads.CleanupOldDataPayload) == frozenset()


def test_a_registered_model_declares_its_fields_for_its_type() -> None:
    class Signup(BaseModel):
        email: Annotated[str, jobstore.Personal]
        plan: str

    registry = jobstore.JobRegistry()
    config = jobstore.JobConfig(
        type="unit-signup", endpoint="/jobs/unit-signup", retries=1, timeout=10
    )
    registry.register(config, Signup)

    assert protect.declared("unit-signup") == {"email"}
    assert "email" in protect.declared_names()


@pytest.mark.parametrize("value", ["ada@example.com", {"name": "Ada", "n": [1, 2.5]}, None, 12345])
def test_a_sealed_value_opens_with_its_key_and_reads_erased_without(value: Any) -> None:
    key = _key()
    sealed = protect.seal(value, key, KID)

    assert set(sealed) == {"$enc", "kid", "ct"} and sealed["kid"] == KID
    assert orjson.dumps(value) not in orjson.dumps(sealed) or value is None
    assert protect.reveal({"x": [sealed]}, {KID: key}) == {"x": [value]}
    assert protect.reveal({"x": [sealed]}, {KID: None}) == {"x": [protect.ERASED]}
    assert protect.mask(sealed, {KID: key}) == protect.PERSONAL


def test_sealed_texts_open_inside_longer_texts() -> None:
    key = _key()
    text = "SMTPRecipientsRefused: " + protect.seal_text("550 <ada@example.com>", key, KID)

    assert protect.kids_in(text) == {KID}
    assert protect.reveal(text, {KID: key}) == "SMTPRecipientsRefused: 550 <ada@example.com>"
    assert protect.reveal(text, {}) == "SMTPRecipientsRefused: [erased]"


def test_a_tampered_or_foreign_ciphertext_is_unreadable_not_an_error() -> None:
    sealed = protect.seal("secret", _key(), KID)

    assert protect.reveal(sealed, {KID: _key()}) == protect.UNREADABLE
    moved = sealed | {"kid": str(uuid.uuid4())}  # another job's id: the AAD no longer fits
    assert protect.reveal(moved, {moved["kid"]: _key()}) == protect.UNREADABLE


def test_an_event_is_sealed_field_by_field_and_an_erased_key_stores_the_marker() -> None:
    key = _key()
    failed = job_events.JobAttemptFailed(
        dispatch=1,
        attempt=1,
        error_type="ValueError",
        error_message="bad ada@example.com",
        traceback="Traceback ... ada@example.com",
        will_retry=False,
    )
    dispatched = job_events.JobDispatched(
        job_id=KID,
        dispatch=1,
        job_type="send-email",
        payload={"template": "welcome", "to": "ada@example.com", "data": {}},
    )

    sealed = protect.sealed_event(failed, key, KID)
    erased = protect.sealed_event(dispatched, None, KID)

    assert isinstance(sealed, job_events.JobAttemptFailed)
    assert sealed.error_type == "ValueError" and "ada" not in sealed.model_dump_json()
    assert protect.reveal(sealed.error_message, {KID: key}) == "bad ada@example.com"
    assert isinstance(erased, job_events.JobDispatched)
    assert erased.payload == {"template": "welcome", "to": "[erased]", "data": "[erased]"}
    assert protect.sealed_event(sealed, key, KID) == sealed  # sealed once, never twice


def test_the_master_key_must_be_32_bytes_and_refuses_keys_it_did_not_wrap() -> None:
    with pytest.raises(keyring.DataKeyError, match="32 random bytes in base64"):
        keyring.MasterKey("too-short")
    one = keyring.MasterKey("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
    other = keyring.MasterKey("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=")
    wrapped = one.wrap(os.urandom(32), KID)

    with pytest.raises(keyring.DataKeyError, match="set JOBTRAIL_DATA_KEY to the key"):
        other.unwrap(wrapped, KID, one.key_id)
    with pytest.raises(keyring.DataKeyError, match="damaged"):
        one.unwrap(wrapped, str(uuid.uuid4()), one.key_id)  # bound to its job


def test_log_lines_mask_personal_fields_and_email_addresses() -> None:
    line = redaction.structlog_processor(
        None,
        "warning",
        {"event": "refused by bob.smith@mail.example.com", "to": "x@y.io", "template": "welcome"},
    )

    assert line == {"event": "refused by [personal]", "to": "[personal]", "template": "welcome"}
