"""The schema migrations runner: ``sql/NNNN_verb_object.sql`` applied in order, each once.

In an installed wheel the migrations ship as ``jobstore/_sql`` (hatchling force-include);
in a source checkout or editable install they are the repository's ``sql/`` folder.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import structlog

from jobstore import database, errors

log = structlog.get_logger("jobtrail.migrations")

# Held for the whole run, so two processes starting at once apply each migration once.
_MIGRATION_LOCK_KEY = 7244012500
_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS jobtrail;
CREATE TABLE IF NOT EXISTS jobtrail.schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, to notice an applied migration edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationState:
    """A migration and when it was applied (None: pending)."""

    version: int
    name: str
    applied_at: datetime | None


def migrations_dir() -> Path:
    """The folder holding the migrations, in a wheel or in a source checkout."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "_sql", package_dir.parent / "sql"):
        if candidate.is_dir() and any(candidate.glob("*.sql")):
            return candidate
    raise errors.MigrationError(
        f"no migrations found in {package_dir / '_sql'} or {package_dir.parent / 'sql'}; "
        "reinstall jobtrail"
    )


def discover(folder: Path | None = None) -> list[Migration]:
    """Every migration in ``folder`` (default: :func:`migrations_dir`), in version order."""
    folder = folder or migrations_dir()
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if match is None:
            raise errors.MigrationError(
                f"migration file {path.name!r} is not named NNNN_verb_object.sql"
            )
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise errors.MigrationError(f"two migrations share a version number in {folder}")
    return found


async def migrate(dsn: str, folder: Path | None = None) -> list[Migration]:
    """Apply every pending migration; return those applied by this call."""
    pending = discover(folder)
    conn = await database.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_KEY)
        try:
            return await _apply_pending(conn, pending)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_KEY)
    except asyncpg.PostgresError as exc:
        raise errors.MigrationError(f"migration failed: {exc}") from None
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, known: list[Migration]) -> list[Migration]:
    # Nothing pending: no DDL at all, so a host logged in as the application role (which
    # may not create anything) can run its start-up migrate.
    if await conn.fetchval("SELECT to_regclass('jobtrail.schema_migrations')") is None:
        await conn.execute(_BOOTSTRAP)
    rows = await conn.fetch("SELECT version, checksum FROM jobtrail.schema_migrations")
    applied = {row["version"]: row["checksum"] for row in rows}
    done: list[Migration] = []
    for migration in known:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise errors.MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after "
                    "it was applied; add a new migration instead of editing an applied one"
                )
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO jobtrail.schema_migrations (version, name, checksum) "
                "VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        log.info("migration applied", version=migration.version, name=migration.name)
        done.append(migration)
    if done and await conn.fetchval("SELECT to_regproc('jobtrail.refresh_app_roles')"):
        await conn.execute("SELECT jobtrail.refresh_app_roles()")  # grants on new tables
    return done


async def status(dsn: str, folder: Path | None = None) -> list[MigrationState]:
    """Every known migration with the time it was applied, or None if pending."""
    known = discover(folder)
    conn = await database.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('jobtrail.schema_migrations')")
        rows = (
            await conn.fetch("SELECT version, applied_at FROM jobtrail.schema_migrations")
            if exists
            else []
        )
    except asyncpg.PostgresError as exc:
        raise errors.MigrationError(f"cannot read migration state: {exc}") from None
    finally:
        await conn.close()
    applied = {row["version"]: row["applied_at"] for row in rows}
    return [MigrationState(m.version, m.name, applied.get(m.version)) for m in known]
