"""Parsing scoped API tokens from settings, and checking a presented one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import jobstore
from projections import token
from projections.token import Scope

SECRET = "s3cret-0123456789abcdef"


def test_scoped_tokens_parse_with_implied_scopes() -> None:
    parsed = token.parse_tokens(
        f"dash:read:{SECRET}a, ops-bot:operate:{SECRET}b,root:admin+read:{SECRET}:c"
    )
    assert [(t.name, sorted(t.scopes)) for t in parsed] == [
        ("dash", ["read"]),
        ("ops-bot", ["operate", "read"]),
        ("root", ["admin", "operate", "read"]),
    ]
    assert parsed[2].secret == f"{SECRET}:c"  # a token may itself hold colons
    assert SECRET not in repr(parsed)


BAD = [
    (f"dash:read{SECRET}", "entry 1 ('dash'): expected name:scope+scope:token"),
    (f"dash:write:{SECRET}", "entry 1 ('dash'): unknown scope 'write'"),
    (f"ok:read:{SECRET}x,short:read:abc", "entry 2 ('short'): the token is shorter than 16"),
    (f"bad name:read:{SECRET}", "entry 1 ('bad name'): a name is"),
    (f"a:read:{SECRET}1,a:read:{SECRET}2", "the name 'a' is used twice"),
    (f"a:read:{SECRET},b:admin:{SECRET}", "token 'b' reuses another's secret"),
]


@pytest.mark.parametrize(("text", "says"), BAD)
def test_a_bad_entry_is_one_line_naming_it_without_its_secret(text: str, says: str) -> None:
    with pytest.raises(token.TokenConfigError) as caught:
        token.parse_tokens(text)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert SECRET not in message


def test_settings_combine_the_default_token_and_the_named_ones() -> None:
    settings = jobstore.Settings(api_token=SECRET + "d", api_tokens=f"dash:read:{SECRET}")
    tokens = token.tokens_from_settings(settings)
    assert [(t.name, t.allows(Scope.ADMIN)) for t in tokens] == [("default", True), ("dash", False)]
    with pytest.raises(token.TokenConfigError, match="JOBTRAIL_API_TOKEN is shorter"):
        token.tokens_from_settings(jobstore.Settings(api_token="short"))


def test_authenticate_finds_the_presented_token_only_as_a_bearer() -> None:
    tokens = token.parse_tokens(f"a:read:{SECRET}a,b:operate:{SECRET}b")
    assert token.authenticate(tokens, f"Bearer {SECRET}b") is tokens[1]
    for header in ("", f"Basic {SECRET}b", f"Bearer {SECRET}", f"{SECRET}a", "Bearer "):
        assert token.authenticate(tokens, header) is None, header


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_probes_are_public_only_on_loopback_unless_configured(host: str, loopback: bool) -> None:
    assert token.public_probes(jobstore.Settings(), host) is loopback
    assert token.public_probes(jobstore.Settings(public_metrics=True), host) is True
    assert token.public_probes(jobstore.Settings(public_metrics=False), host) is False


def test_a_generated_token_is_owner_only_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "api-token"
    first, created = token.load_or_create(path)
    assert created and len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert token.load_or_create(path) == (first, False)
    os.chmod(path, 0o644)
    with pytest.raises(token.TokenConfigError, match="readable by others"):
        token.load_or_create(path)
