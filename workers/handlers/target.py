"""Calling a URL a job chose, under the address policy (webhooks and callbacks).

The policy itself (schemes, ports, which addresses are public) is
:mod:`jobstore.address`; this module applies it at call time.  The host name is
resolved once, every address is checked, and the connection is made to exactly those
checked addresses (a pinned resolver), so a DNS answer that changes between the check and
the connect (DNS rebinding) cannot slip past.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from jobstore import AddressPolicy, address
from workers.handlers import error

Lookup = Callable[[str, int], Awaitable[list[str]]]
"""Resolve a host name and port to IP address strings (the default uses getaddrinfo)."""

DNS_TIMEOUT_SECONDS = 10.0


async def getaddrinfo_lookup(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the event loop's getaddrinfo (in its thread pool)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def display_url(url: yarl.URL) -> str:
    """``url`` without credentials, query or fragment: safe to put in errors and logs."""
    if not url.absolute:
        return str(url.with_query(None).with_fragment(None))
    return str(url.with_user(None).with_query(None).with_fragment(None))


def check_url(url: yarl.URL, policy: AddressPolicy) -> tuple[str, int]:
    """The host and port of ``url`` once its scheme, port and literal address pass ``policy``."""
    refusal = policy.url_refusal(url.scheme, url.host, url.port)
    if refusal is not None or not url.host:
        raise error.WebhookTargetRefusedError(f"URL {display_url(url)} is refused: {refusal}")
    return url.host, url.port or (443 if url.scheme == "https" else 80)


async def resolve_checked(
    host: str, port: int, *, policy: AddressPolicy, lookup: Lookup = getaddrinfo_lookup
) -> list[str]:
    """Resolve ``host`` and return its addresses once every one of them passes ``policy``.

    A host that is an IP address is its own answer: ``lookup`` is not called (getaddrinfo
    in a thread costs ~80 µs of CPU for nothing), and the address is checked all the same.
    """
    if address.literal_address(host) is not None:
        addresses = [host]
    else:
        addresses = await _resolve(host, port, lookup)
    if not addresses:
        raise error.WebhookDeliveryError(f"host {host!r} resolved to no address")
    for text in addresses:
        refusal = policy.address_refusal(ipaddress.ip_address(text.split("%", 1)[0]))
        if refusal is not None:
            raise error.WebhookTargetRefusedError(f"host {host!r} resolves to {text}: {refusal}")
    return addresses


async def _resolve(host: str, port: int, lookup: Lookup) -> list[str]:
    try:
        async with asyncio.timeout(DNS_TIMEOUT_SECONDS):
            return await lookup(host, port)
    except (OSError, TimeoutError) as exc:
        raise error.WebhookDeliveryError(f"could not resolve host {host!r}: {exc}") from exc


async def pinned_connector(
    url: yarl.URL, policy: AddressPolicy, lookup: Lookup = getaddrinfo_lookup
) -> aiohttp.TCPConnector:
    """A connector that reaches only ``url``'s host, at addresses ``policy`` passed.

    The URL is checked, its host resolved once and every address checked; the connector
    connects to exactly those addresses and never looks the name up again.
    """
    host, port = check_url(url, policy)
    addresses = await resolve_checked(host, port, policy=policy, lookup=lookup)
    return aiohttp.TCPConnector(resolver=PinnedResolver(host, addresses), use_dns_cache=False)


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
            raise OSError(f"{host!r} was not checked by the address policy")
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
