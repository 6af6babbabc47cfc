"""``jobtrail db migrate|status`` in a subprocess, against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests import pg

JOBTRAIL = [sys.executable, "-c", "from workers.cli import main; main()"]


def run(args: list[str], dsn: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    environment.pop("DATABASE_URL", None)
    if dsn is not None:
        environment["DATABASE_URL"] = dsn
    return subprocess.run(
        [*JOBTRAIL, *args], env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
async def empty_db(server_dsn: str) -> AsyncIterator[str]:
    name = pg.unique_name("jobtrail_cli")
    conn = await asyncpg.connect(server_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield pg.with_database(server_dsn, name)
    await pg.drop(server_dsn, name)


def test_db_status_then_migrate_then_status(empty_db: str) -> None:
    before = run(["db", "status", "--json"], empty_db)
    assert before.returncode == 3, "pending migrations exit 3"
    assert all(m["applied_at"] is None for m in json.loads(before.stdout)["migrations"])

    migrated = run(["db", "migrate", "--json"], empty_db)
    assert migrated.returncode == 0, migrated.stderr
    report = json.loads(migrated.stdout)
    assert report["applied"][0] == "0001_create_event_log"
    assert report["last_position"] == 0

    after = run(["db", "status"], empty_db)
    assert after.returncode == 0
    assert "create_event_log" in after.stdout
    assert "pending" not in after.stdout


def test_unreachable_database_is_one_clear_line() -> None:
    result = run(["db", "migrate"], "postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/none" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.embedded
@pytest.mark.slow
def test_db_migrate_without_database_url_uses_the_embedded_server(embedded_dir: Path) -> None:
    result = run(["db", "migrate", "--json"], None, JOBTRAIL_DATA_DIR=str(embedded_dir / "jt"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["database"].startswith("embedded PostgreSQL in ")
