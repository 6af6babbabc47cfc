"""The application role: the database role a host runs as, which cannot rewrite the log.

The role reads and appends to ``jobtrail.events``, writes the views, the relay's tables
and the checkpoints, and archives only through ``jobtrail.archive_streams`` (a
``SECURITY DEFINER`` function); it holds no UPDATE, DELETE or TRUNCATE on the log.
The grants themselves live in the database (``sql/0015_secure_archiving.sql``); this
module creates the role, grants it again after migrations, and checks what it can do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from typing import Final

import asyncpg

from jobstore import database, errors, query

_Q = query.load("jobstore", "role.sql")

ROLE_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""A role name jobtrail accepts: a plain lowercase identifier (never quoted, never ``pg_``)."""

SCRAM_ITERATIONS: Final = 4096
"""PostgreSQL's own default (``scram_iterations``)."""


class AppRoleError(errors.JobstoreError):
    """The application role could not be created, granted or checked."""


@dataclass(frozen=True, slots=True)
class RoleReport:
    """What a role can do: ``unsafe`` lists how it could change the log, ``missing`` what a
    host running as it could not do."""

    role: str
    login: bool
    unsafe: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        """True when the role cannot change or remove a recorded event."""
        return not self.unsafe

    @property
    def complete(self) -> bool:
        """True when a host running as the role has every privilege it needs."""
        return not self.missing


def validate_role_name(name: str) -> str:
    """Return ``name`` if it is an acceptable role name, else raise :class:`AppRoleError`."""
    if not ROLE_NAME.fullmatch(name) or name.startswith("pg_"):
        raise AppRoleError(
            f"invalid role name {name!r}: use 1 to 63 lowercase letters, digits and "
            "underscores, starting with a letter or underscore (and not with pg_)"
        )
    return name


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores for ``password`` (as ``\\password`` sends
    it), so the password itself never travels to the server or its logs."""
    # PostgreSQL prepares passwords with SASLprep; NFKC is its normalisation step, and
    # ASCII passwords (the usual generated kind) are unchanged by either.
    raw = unicodedata.normalize("NFKC", password).encode()
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", raw, salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def ensure_app_role(dsn: str, name: str, password: str | None = None) -> bool:
    """Create role ``name`` if missing (NOLOGIN without a password), grant it what a host
    needs, and return whether it was created.  A password given for an existing role
    replaces its password (and lets it log in)."""
    validate_role_name(name)
    verifier = scram_verifier(password) if password else None
    conn = await database.connect(dsn)
    try:
        async with conn.transaction():
            created: bool = await conn.fetchval(_Q["ensure_app_role"], name, verifier)
    except asyncpg.PostgresError as exc:
        raise AppRoleError(f"cannot set up application role {name!r}: {exc}") from None
    finally:
        await conn.close()
    return created


async def refresh_app_roles(dsn: str) -> list[str]:
    """Grant every application role set up before on this database again, so the tables
    that later migrations added are theirs too; return their names."""
    conn = await database.connect(dsn)
    try:
        async with conn.transaction():
            rows = await conn.fetch(_Q["refresh_app_roles"])
    except asyncpg.PostgresError as exc:
        raise AppRoleError(f"cannot grant the application roles again: {exc}") from None
    finally:
        await conn.close()
    return [row["role_name"] for row in rows]


async def check_app_role(dsn: str, name: str) -> RoleReport:
    """Report whether role ``name`` could change the event log, and what a host running
    as it would lack."""
    validate_role_name(name)
    conn = await database.connect(dsn)
    try:
        return await _check(conn, name)
    except asyncpg.PostgresError as exc:
        raise AppRoleError(f"cannot check role {name!r}: {exc}") from None
    finally:
        await conn.close()


async def _check(conn: asyncpg.Connection, name: str) -> RoleReport:
    role = await conn.fetchrow(_Q["role_attributes"], name)
    if role is None:
        raise AppRoleError(
            f"role {name!r} does not exist; create it with `jobtrail db migrate --app-role {name}`"
        )
    if role["owner"] is None:
        raise AppRoleError("the database has no jobtrail schema; run `jobtrail db migrate` first")
    unsafe: list[str] = []
    if role["superuser"]:
        unsafe.append("is a superuser (bypasses every privilege)")
    if role["acts_as_owner"]:
        unsafe.append(f"owns the event log or may act as its owner {role['owner']!r}")
    if role["createrole"]:
        unsafe.append("has CREATEROLE (it could grant itself the log owner's role)")
    for row in await conn.fetch(_Q["log_privileges_held"], name):
        if row["held"]:
            unsafe.append(f"can {row['held']} {row['table_name']}")
    guards = await conn.fetchrow(_Q["log_guards"])
    assert guards is not None  # an aggregate-free SELECT without FROM: always one row
    if not guards["secured"] or not guards["definer"]:
        unsafe.append(
            "jobtrail.archive_streams is not the SECURITY DEFINER function of migration "
            "0015_secure_archiving (a session-set jobtrail.archiving would let rows go); "
            "run `jobtrail db migrate`"
        )
    if not guards["guarded"]:
        unsafe.append("the append-only triggers on jobtrail.events are missing or disabled")
    missing = [
        f"{row['privileges']} on {row['object']}"
        for row in await conn.fetch(_Q["host_privileges_missing"], name)
    ]
    return RoleReport(role=name, login=role["login"], unsafe=unsafe, missing=missing)
