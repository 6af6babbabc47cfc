"""API tokens: named, scoped bearer tokens, parsed from settings and checked in constant time.

Scopes nest: ``admin`` (raw payloads) implies ``operate`` (enqueue, cancel, replay,
schedules), which implies ``read`` (views, history, stats).  ``JOBTRAIL_API_TOKEN`` is one
token with every scope, named ``default``; ``JOBTRAIL_API_TOKENS`` holds
``name:scope+scope:token`` entries separated by commas.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from jobstore import Settings

MIN_LENGTH: Final = 16
DEFAULT_NAME: Final = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Scope(enum.StrEnum):
    """What a token may do."""

    READ = "read"
    OPERATE = "operate"
    ADMIN = "admin"


_IMPLIED: Final = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.OPERATE: frozenset({Scope.READ, Scope.OPERATE}),
    Scope.ADMIN: frozenset({Scope.READ, Scope.OPERATE, Scope.ADMIN}),
}


class TokenConfigError(ValueError):
    """The API tokens are misconfigured (the message names the bad entry)."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A named bearer token and the scopes it grants (its secret never in ``repr``)."""

    name: str
    scopes: frozenset[Scope]
    secret: str = field(repr=False)

    def allows(self, scope: Scope) -> bool:
        """Whether this token grants ``scope`` (directly or by implication)."""
        return scope in self.scopes

    @property
    def actor(self) -> str:
        """How events this token causes name who caused them: ``api:<name>``."""
        return f"api:{self.name}"


def token(name: str, secret: str, *scopes: Scope | str) -> ApiToken:
    """A token named ``name`` granting ``scopes`` (and what they imply)."""
    granted: set[Scope] = set()
    for scope in scopes or (Scope.ADMIN,):
        granted |= _IMPLIED[Scope(scope)]
    if not isinstance(secret, str) or len(secret) < MIN_LENGTH:
        raise TokenConfigError(
            f"API token {name!r} is shorter than {MIN_LENGTH} characters; use a longer one"
        )
    return ApiToken(name, frozenset(granted), secret)


def parse_tokens(text: str, variable: str = "JOBTRAIL_API_TOKENS") -> list[ApiToken]:
    """Tokens from ``name:scope+scope:token`` entries separated by commas."""
    tokens: list[ApiToken] = []
    for index, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":", 2)
        name = parts[0].strip()
        where = f"{variable} entry {index} ({name[:64]!r})" if name else f"{variable} entry {index}"
        if len(parts) != 3:
            raise TokenConfigError(f"{where}: expected name:scope+scope:token")
        if not _NAME.fullmatch(name):
            raise TokenConfigError(
                f"{where}: a name is 1-64 letters, digits, '.', '_' or '-', starting with "
                "a letter or digit"
            )
        scopes = [s.strip() for s in parts[1].split("+")]
        unknown = [s for s in scopes if s not in Scope.__members__.values()]
        if unknown or not parts[1].strip():
            raise TokenConfigError(
                f"{where}: unknown scope {(unknown or [''])[0][:20]!r}; "
                f"valid: {', '.join(Scope)} (joined with '+')"
            )
        if len(parts[2]) < MIN_LENGTH:
            raise TokenConfigError(f"{where}: the token is shorter than {MIN_LENGTH} characters")
        tokens.append(token(name, parts[2], *scopes))
    return check_unique(tokens, variable)


def check_unique(tokens: list[ApiToken], variable: str) -> list[ApiToken]:
    """``tokens``, if no two share a name or a secret (else TokenConfigError naming one)."""
    names: set[str] = set()
    digests: set[bytes] = set()
    for item in tokens:
        if item.name in names:
            raise TokenConfigError(f"{variable}: the name {item.name!r} is used twice")
        digest = hashlib.sha256(item.secret.encode()).digest()
        if digest in digests:
            raise TokenConfigError(f"{variable}: token {item.name!r} reuses another's secret")
        names.add(item.name)
        digests.add(digest)
    return tokens


def tokens_from_settings(settings: Settings) -> list[ApiToken]:
    """Every token the settings configure (none configured is an empty list)."""
    tokens: list[ApiToken] = []
    if settings.api_token is not None:
        secret = settings.api_token.get_secret_value()
        if len(secret) < MIN_LENGTH:
            raise TokenConfigError(
                f"JOBTRAIL_API_TOKEN is shorter than {MIN_LENGTH} characters; use a longer one"
            )
        tokens.append(token(DEFAULT_NAME, secret, Scope.ADMIN))
    if settings.api_tokens is not None:
        tokens += parse_tokens(settings.api_tokens.get_secret_value())
    return check_unique(tokens, "JOBTRAIL_API_TOKEN(S)")


def authenticate(tokens: Iterable[ApiToken], authorization: str) -> ApiToken | None:
    """The token an ``Authorization: Bearer …`` header presents, or None.

    Every configured token is compared, in constant time, whichever matches: the time
    taken says nothing about which token (or how much of one) was right.
    """
    scheme, _, given = authorization.partition(" ")
    presented = given.strip().encode("utf-8", "replace")
    is_bearer = hmac.compare_digest(scheme.lower().encode("utf-8", "replace"), b"bearer")
    found = None
    for item in tokens:
        if hmac.compare_digest(presented, item.secret.encode()) and found is None:
            found = item
    return found if is_bearer else None


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def public_probes(settings: Settings, listen_host: str) -> bool:
    """Whether /metrics and /api/v1/openapi.json answer without a token.

    ``JOBTRAIL_PUBLIC_METRICS`` decides when set; otherwise only a host listening on
    loopback serves them openly (the listening address, not the caller's: behind a local
    proxy every caller is 127.0.0.1).
    """
    if settings.public_metrics is not None:
        return settings.public_metrics
    return is_loopback(listen_host)


def kept_token(settings: Settings) -> tuple[str, Path, bool]:
    """The generated token (all scopes) kept for a host without configured tokens.

    Returns (token, its file, whether it was created now).  The file is
    ``JOBTRAIL_API_TOKEN_FILE`` or <data_dir>/api-token; a restart reuses it.
    """
    path = settings.api_token_file or settings.data_dir / "api-token"
    secret, created = load_or_create(path)
    return secret, path, created


def load_or_create(path: Path) -> tuple[str, bool]:
    """The token kept in ``path``, or a new one written there readable by its owner only.

    Returns (token, created).  The file is created with ``O_EXCL`` and mode 0600 before a
    byte is written, and its folder 0700 if missing, so no one else can ever read it; a
    file others can read is refused rather than used.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_kept(path), False
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret, True


def _read_kept(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise TokenConfigError(
            f"the API token file {path} is readable by others (mode {mode:04o}); "
            f"run chmod 600 {path} or delete it to generate a new token"
        )
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < MIN_LENGTH:
        raise TokenConfigError(
            f"the API token file {path} holds fewer than {MIN_LENGTH} characters; "
            "delete it to generate a new token"
        )
    return secret


@dataclass(frozen=True, slots=True)
class Access:
    """A host's API tokens, and whether its probes (/metrics, the API document) are open."""

    tokens: tuple[ApiToken, ...]
    public_probes: bool

    @classmethod
    def from_settings(cls, settings: Settings, listen_host: str) -> Access:
        """The tokens ``settings`` configure, for a host listening on ``listen_host``."""
        return cls(tuple(tokens_from_settings(settings)), public_probes(settings, listen_host))

    def probe_token(self, authorization: str) -> ApiToken | bool | None:
        """True if a probe may answer openly, else the token presented (None if none fits)."""
        return True if self.public_probes else authenticate(self.tokens, authorization)
