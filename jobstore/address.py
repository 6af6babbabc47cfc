"""Where jobtrail may send a request: the address policy against server-side request forgery.

A job chooses the URLs of its webhook and of its callbacks, so without a policy anyone who
can enqueue a job could make the host call its own loopback services, the cloud metadata
endpoint (169.254.169.254), the private network, or a mail server on port 25.  This module
is the one statement of that policy: which schemes, which ports, which addresses.  It is
pure (no DNS): the dispatcher applies it at enqueue to what a URL says literally, and the
host applies it again at call time to every address the name resolves to
(``workers.handlers.target``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, AnyHttpUrl, ValidationInfo
from pydantic_core import PydanticCustomError

from jobstore.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = frozenset({80, 443})
ANY_PORT = "*"
CONTEXT_KEY = "jobtrail_address_policy"
"""The pydantic validation-context key under which the dispatcher passes its policy."""

_PUBLIC_ONLY = (
    "requests may only go to public addresses "
    "(set JOBTRAIL_WEBHOOK_ALLOW_PRIVATE=true to allow private targets)"
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DEFAULT_PORT = {"http": 80, "https": 443}


def parse_ports(text: str) -> frozenset[int] | None:
    """``JOBTRAIL_WEBHOOK_PORTS`` as a set of ports; None means any port (``*``)."""
    if text.strip() == ANY_PORT:
        return None
    ports: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise ValueError(
                f"JOBTRAIL_WEBHOOK_PORTS has {item!r}, which is not a port; give "
                "comma-separated ports from 1 to 65535 (e.g. '80,443,8443') or '*' for any"
            )
        ports.add(int(item))
    if not ports:
        raise ValueError("JOBTRAIL_WEBHOOK_PORTS is empty; give ports such as '80,443' or '*'")
    return frozenset(ports)


def refusal_reason(address: IPAddress) -> str | None:
    """Why a request may not go to ``address``, or None when it is a public address."""
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


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is one (``[::1]`` included), else None."""
    text = host.removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def default_port(scheme: str) -> int:
    """The port an http(s) URL without one goes to."""
    return _DEFAULT_PORT.get(scheme, 0)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which ports and addresses outgoing requests (webhooks, callbacks) may go to.

    The default is the strict policy: public addresses only, ports 80 and 443.
    """

    allow_private: bool = False
    ports: frozenset[int] | None = DEFAULT_PORTS

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        """The policy ``JOBTRAIL_WEBHOOK_ALLOW_PRIVATE`` and ``JOBTRAIL_WEBHOOK_PORTS`` say."""
        return cls(
            allow_private=settings.webhook_allow_private_targets,
            ports=parse_ports(settings.webhook_allowed_ports),
        )

    def port_refusal(self, port: int) -> str | None:
        """Why a request may not go to ``port``, or None when the allow-list has it."""
        if self.ports is None or port in self.ports:
            return None
        allowed = ", ".join(str(p) for p in sorted(self.ports))
        return (
            f"port {port} is not allowed; allowed ports: {allowed} "
            "(set JOBTRAIL_WEBHOOK_PORTS to change them)"
        )

    def address_refusal(self, address: IPAddress) -> str | None:
        """Why a request may not go to ``address``, or None when the policy allows it."""
        if self.allow_private:
            return None
        reason = refusal_reason(address)
        if reason is None:
            return None
        return f"{address} is a {reason} address; {_PUBLIC_ONLY}"

    def url_refusal(self, scheme: str, host: str | None, port: int | None) -> str | None:
        """Why a URL may not be called, judging only what it says (no DNS), or None."""
        if scheme not in ALLOWED_SCHEMES or not host:
            return "only http:// and https:// URLs with a host name are allowed"
        refusal = self.port_refusal(port or default_port(scheme))
        if refusal is not None:
            return refusal
        address = literal_address(host)
        if address is None and not self.allow_private and _is_localhost_name(host):
            return f"{host} is a loopback name; {_PUBLIC_ONLY}"
        return None if address is None else self.address_refusal(address)


STRICT = AddressPolicy()
"""Public addresses only, on ports 80 and 443."""


def _is_localhost_name(host: str) -> bool:
    """``localhost`` and ``*.localhost`` always mean loopback (RFC 6761)."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def _checked(url: AnyHttpUrl, info: ValidationInfo) -> AnyHttpUrl:
    """Apply the policy the validation context carries (none: the caller checks later)."""
    policy = (info.context or {}).get(CONTEXT_KEY)
    if isinstance(policy, AddressPolicy):
        refusal = policy.url_refusal(url.scheme, url.host, url.port)
        if refusal is not None:
            raise PydanticCustomError(
                "url_refused", "URL is refused: {refusal}", {"refusal": refusal}
            )
    return url


TargetUrl = Annotated[AnyHttpUrl, AfterValidator(_checked)]
"""An http(s) URL jobtrail will call: checked against the address policy at enqueue."""
