"""JOBTRAIL_AUDIT_PREVIOUS_KEYS: read comma-separated, each key validated like the current one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobstore import Settings, audit

CURRENT = "current-audit-key-0123456789"


def test_previous_audit_keys_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBTRAIL_AUDIT_KEY", CURRENT)
    monkeypatch.setenv(
        "JOBTRAIL_AUDIT_PREVIOUS_KEYS", " older-audit-key-0123456789 ,oldest-audit-key-0123456789,"
    )

    key = audit.AuditKey.from_settings(Settings())

    assert key.secret == CURRENT.encode()
    assert [k.secret for k in key.previous] == [
        b"older-audit-key-0123456789",
        b"oldest-audit-key-0123456789",
    ]
    assert key.named(key.previous[1].key_id) == key.previous[1]
    assert key.named(key.key_id) == key
    assert "older" not in repr(key) and "older" not in key.described()


def test_no_previous_audit_keys_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBTRAIL_AUDIT_PREVIOUS_KEYS", raising=False)
    assert audit.AuditKey.from_settings(Settings()).previous == ()


@pytest.mark.parametrize(
    ("previous", "message"),
    [
        (
            "older-audit-key-0123456789,short",
            "key 2 has 5 characters; an audit key needs at least 16",
        ),
        (f"older-audit-key-0123456789,{CURRENT}", "key 2 is JOBTRAIL_AUDIT_KEY itself"),
    ],
)
def test_a_bad_previous_audit_key_is_refused_by_its_place(
    monkeypatch: pytest.MonkeyPatch, previous: str, message: str
) -> None:
    monkeypatch.setenv("JOBTRAIL_AUDIT_KEY", CURRENT)
    monkeypatch.setenv("JOBTRAIL_AUDIT_PREVIOUS_KEYS", previous)
    with pytest.raises(ValidationError, match=message):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOBTRAIL_AUDIT_KEY", "leaky-7"),
        ("JOBTRAIL_AUDIT_PREVIOUS_KEYS", "a-long-old-key-0123,leaky-7"),
    ],
)
def test_a_refused_secret_is_not_repeated_in_the_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A configuration error names the setting and what is wrong, never the secret given."""
    monkeypatch.setenv("JOBTRAIL_AUDIT_KEY", CURRENT)
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError) as raised:
        Settings()

    assert "leaky-7" not in str(raised.value)
    assert name.removeprefix("JOBTRAIL_").lower() in str(raised.value).lower()
