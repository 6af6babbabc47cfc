"""Where a webhook may go: the address policy against server-side request forgery.

A job's payload chooses the webhook URL, so without a policy anyone who can enqueue a job
could make the host call its own loopback services, the cloud metadata endpoint
(169.254.169.254) or the private network.  The host name is resolved once, every address
is checked, and the connection is made to exactly those checked addresses (a pinned
resolver), so a DNS answer that changes between the check and the connect (DNS
rebinding) cannot slip past.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from workers.handlers import error

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[[str, int], Awaitable[list[str]]]
"""Resolve a host name and port to IP address strings (the default uses getaddrinfo)."""

ALLOWED_SCHEMES = frozenset({"http", "https"})
DNS_TIMEOUT_SECONDS = 10.0
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


async def getaddrinfo_lookup(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the event loop's getaddrinfo (in its thread pool)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal_reason(address: IPAddress) -> str | None:
    """Why a webhook may not go to ``address``, or None when it is a public address."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal_reason(embedded)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address, if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def display_url(url: yarl.URL) -> str:
    """``url`` without credentials, query or fragment: safe to put in errors and logs."""
    if not url.absolute:
        return str(url.with_query(None).with_fragment(None))
    return str(url.with_user(None).with_query(None).with_fragment(None))


def check_url(url: yarl.URL) -> tuple[str, int]:
    """The host and port of an http(s) ``url``; any other scheme is refused."""
    if url.scheme not in ALLOWED_SCHEMES or not url.host:
        raise error.WebhookTargetRefusedError(
            f"webhook URL {display_url(url)} is refused: only http:// and https:// "
            "URLs with a host name are allowed"
        )
    return url.host, url.port or (443 if url.scheme == "https" else 80)


async def resolve_checked(
    host: str, port: int, *, allow_private: bool, lookup: Lookup = getaddrinfo_lookup
) -> list[str]:
    """Resolve ``host`` and return its addresses once every one of them passes the policy."""
    try:
        async with asyncio.timeout(DNS_TIMEOUT_SECONDS):
            addresses = await lookup(host, port)
    except (OSError, TimeoutError) as exc:
        raise error.WebhookDeliveryError(f"could not resolve webhook host {host!r}: {exc}") from exc
    if not addresses:
        raise error.WebhookDeliveryError(f"webhook host {host!r} resolved to no address")
    if not allow_private:
        for text in addresses:
            reason = refusal_reason(ipaddress.ip_address(text.split("%", 1)[0]))
            if reason is not None:
                raise error.WebhookTargetRefusedError(
                    f"webhook host {host!r} resolves to {text}, a {reason} address; webhooks "
                    "may only go to public addresses (set JOBTRAIL_WEBHOOK_ALLOW_PRIVATE=true "
                    "to allow private targets)"
                )
    return addresses


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that answers only for one host, with its checked addresses."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self._host = host.rstrip(".").lower()
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The checked addresses of the pinned host; any other host is an error."""
        if host.rstrip(".").lower() != self._host:
            raise OSError(f"{host!r} was not checked by the webhook address policy")
        return [_result(host, address, port) for address in self._addresses]

    async def close(self) -> None:
        """Nothing to release."""


def _result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {
        "hostname": host,
        "host": address,
        "port": port,
        "family": family,
        "proto": socket.IPPROTO_TCP,
        "flags": socket.AI_NUMERICHOST,
    }
