"""The dashboard's pure parts: masked values in edited payloads, sessions, CSRF tokens."""

from __future__ import annotations

import projections
from workers.dashboard import edit, session

STORED = {"to": "a@example.com", "api_key": "k-123", "note": "token=abc123secret", "n": 1}
SHOWN = {"to": "a@example.com", "api_key": "[redacted]", "note": "token=[redacted]", "n": 1}


def test_masked_values_left_as_shown_keep_their_stored_values() -> None:
    merged, touched = edit.restore_masked(SHOWN | {"n": 2}, STORED)
    assert merged == STORED | {"n": 2} and not touched


def test_changing_or_removing_a_masked_value_is_noted() -> None:
    assert edit.restore_masked(SHOWN | {"api_key": "k-999"}, STORED) == (
        STORED | {"api_key": "k-999"},
        True,
    )
    without = {k: v for k, v in SHOWN.items() if k != "api_key"}
    assert edit.restore_masked(without, STORED)[1] is True
    assert edit.restore_masked(SHOWN | {"note": "plain"}, STORED)[1] is True


def test_raw_values_submitted_unchanged_are_not_an_edit() -> None:
    assert edit.restore_masked(STORED, STORED) == (STORED, False)
    nested = {"items": [STORED, {"x": 1}]}
    shown = {"items": [SHOWN, {"x": 2}]}
    assert edit.restore_masked(shown, nested) == ({"items": [STORED, {"x": 2}]}, False)


TOKEN = projections.token.token("ops", "operator-token-0123456789", "operate")


def test_a_session_cookie_proves_its_token_until_the_token_changes() -> None:
    key = session.key_for((TOKEN,))
    cookie = session.issue(key, TOKEN)
    found = session.read(key, (TOKEN,), cookie)
    assert found is not None and found.token == TOKEN
    rotated = projections.token.token("ops", "another-secret-0123456789", "operate")
    assert session.read(key, (rotated,), cookie) is None
    assert session.read(key, (TOKEN,), cookie[:-2] + "xx") is None
    assert session.read(key, (TOKEN,), session.issue(key, TOKEN, now=0)) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    key = session.key_for((TOKEN,))
    token = session.csrf_token(key, "nonce-a")
    assert session.check_csrf(key, "nonce-a", token)
    assert not session.check_csrf(key, "nonce-b", token)
    assert not session.check_csrf(key, "nonce-a", None)
