"""Migrations: applied in order, each once, safely from concurrent processes."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

import jobstore
from jobstore import migrations


async def _recorded(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, name FROM jobtrail.schema_migrations ORDER BY 1")
    finally:
        await conn.close()
    return [(r["version"], r["name"]) for r in rows]


async def test_migrate_applies_everything_once_and_twice_changes_nothing(empty_dsn: str) -> None:
    known = migrations.discover()
    first = await jobstore.migrate(empty_dsn)
    second = await jobstore.migrate(empty_dsn)

    assert [m.version for m in first] == [m.version for m in known]
    assert second == []
    assert await _recorded(empty_dsn) == [(m.version, m.name) for m in known]
    states = await jobstore.status(empty_dsn)
    assert all(s.applied_at is not None for s in states)


async def test_concurrent_migrate_calls_both_succeed(empty_dsn: str) -> None:
    results = await asyncio.gather(*(jobstore.migrate(empty_dsn) for _ in range(4)))

    applied = [m.version for r in results for m in r]
    assert sorted(applied) == [m.version for m in migrations.discover()], "each applied once"
    assert len(await _recorded(empty_dsn)) == len(migrations.discover())


async def test_status_on_an_empty_database_shows_everything_pending(empty_dsn: str) -> None:
    states = await jobstore.status(empty_dsn)
    assert states and all(s.applied_at is None for s in states)


async def test_editing_an_applied_migration_is_refused(empty_dsn: str, tmp_path: Path) -> None:
    folder = tmp_path / "sql"
    shutil.copytree(migrations.migrations_dir(), folder)
    await jobstore.migrate(empty_dsn, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")

    with pytest.raises(jobstore.MigrationError, match="changed after it was applied"):
        await jobstore.migrate(empty_dsn, folder)


async def test_a_failing_migration_is_rolled_back_and_reported(
    empty_dsn: str, tmp_path: Path
) -> None:
    folder = tmp_path / "sql"
    shutil.copytree(migrations.migrations_dir(), folder)
    (folder / "9999_break_things.sql").write_text("CREATE TABLE jobtrail.x (); SELECT 1/0;")

    with pytest.raises(jobstore.MigrationError, match="division by zero"):
        await jobstore.migrate(empty_dsn, folder)
    recorded = await _recorded(empty_dsn)
    assert 9999 not in [v for v, _ in recorded]
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('jobtrail.x')") is None
    finally:
        await conn.close()


def test_badly_named_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(jobstore.MigrationError, match="NNNN_verb_object"):
        migrations.discover(tmp_path)


def test_migrations_are_found_in_a_source_checkout() -> None:
    assert migrations.migrations_dir() == Path(__file__).resolve().parents[2] / "sql"
