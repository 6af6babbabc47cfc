"""The webhook address policy and signature check, as pure functions."""

from __future__ import annotations

import ipaddress

import pytest

from workers import handlers
from workers.handlers import target, webhook


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.53", "loopback"),
        ("::1", "loopback"),
        ("10.20.30.40", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("239.1.2.3", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not globally routable"),
        ("::ffff:192.168.0.1", "private"),
        ("2002:a00:1::1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
    ],
)
def test_non_public_addresses_are_refused_with_the_reason(address: str, reason: str) -> None:
    assert target.refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34"]
)
def test_public_addresses_pass_the_policy(address: str) -> None:
    assert target.refusal_reason(ipaddress.ip_address(address)) is None


def test_signature_older_than_the_tolerance_is_rejected() -> None:
    body = b'{"a":1}'
    header = webhook.sign("s", 1_000_000, body)

    assert handlers.verify_signature("s", header, body, now=1_000_000 + 300)
    assert not handlers.verify_signature("s", header, body, now=1_000_000 + 301)
    assert not handlers.verify_signature("s", "v1=abc", body, now=1_000_000)
