"""The address policy (jobstore.address) and the webhook signature check, as pure functions."""

from __future__ import annotations

import ipaddress

import pytest

from jobstore import AddressPolicy
from jobstore import address as policy
from workers import handlers
from workers.handlers import webhook


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
    assert policy.refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34"]
)
def test_public_addresses_pass_the_policy(address: str) -> None:
    assert policy.refusal_reason(ipaddress.ip_address(address)) is None


def test_signature_older_than_the_tolerance_is_rejected() -> None:
    body = b'{"a":1}'
    header = webhook.sign("s", 1_000_000, body)

    assert handlers.verify_signature("s", header, body, now=1_000_000 + 300)
    assert not handlers.verify_signature("s", header, body, now=1_000_000 + 301)
    assert not handlers.verify_signature("s", "v1=abc", body, now=1_000_000)


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        (("http", "example.com", 25), "port 25 is not allowed; allowed ports: 80, 443"),
        (("https", "example.com", 8443), "port 8443 is not allowed"),
        (("http", "10.0.0.1", 80), "10.0.0.1 is a private address"),
        (("http", "[::1]", 80), "::1 is a loopback address"),
        (("https", "169.254.169.254", 443), "link-local"),
        (("http", "localhost", 80), "localhost is a loopback name"),
        (("http", "api.localhost.", 80), "loopback name"),
        (("ftp", "example.com", 21), "only http:// and https://"),
        (("http", None, 80), "only http:// and https://"),
    ],
)
def test_strict_policy_refuses_what_a_url_says_without_dns(
    url: tuple[str, str | None, int], refusal: str
) -> None:
    reason = policy.STRICT.url_refusal(*url)
    assert reason is not None
    assert refusal in reason


@pytest.mark.parametrize(
    "url",
    [("https", "example.com", 443), ("http", "hooks.example.com", 80), ("https", "8.8.8.8", None)],
)
def test_strict_policy_passes_public_urls_on_the_default_ports(
    url: tuple[str, str, int | None],
) -> None:
    assert policy.STRICT.url_refusal(*url) is None


def test_allow_list_and_private_switch_widen_the_policy() -> None:
    relaxed = AddressPolicy(allow_private=True, ports=policy.parse_ports("80, 443,8080"))

    assert relaxed.url_refusal("http", "127.0.0.1", 8080) is None
    assert relaxed.url_refusal("http", "localhost", 80) is None
    assert relaxed.url_refusal("http", "127.0.0.1", 25) is not None
    assert AddressPolicy(ports=policy.parse_ports("*")).url_refusal("http", "a.example", 25) is None


@pytest.mark.parametrize("text", ["", "http", "0", "70000", "80;443"])
def test_bad_port_lists_are_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match="JOBTRAIL_WEBHOOK_PORTS"):
        policy.parse_ports(text)
