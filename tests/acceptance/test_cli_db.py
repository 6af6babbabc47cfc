"""``jobtrail db migrate|status`` in a subprocess, against a real database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

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
    assert not re.search(r"│\s*pending\s*│", after.stdout), "no migration is left pending"


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


@pytest.fixture
async def role_name(empty_db: str) -> AsyncIterator[str]:
    """A unique application role name; the role is dropped after the test (roles are
    cluster-wide)."""
    name = f"jt_cli_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(empty_db)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
        )
        if await conn.fetchval("SELECT to_regrole($1) IS NOT NULL", name):
            await conn.execute(f'DROP OWNED BY "{name}"')
            await conn.execute(f'DROP ROLE "{name}"')
    finally:
        await conn.close()


async def test_db_migrate_app_role_makes_a_login_that_cannot_rewrite_the_log(
    empty_db: str, role_name: str
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    migrated = run(
        ["db", "migrate", "--app-role", role_name, "--json"],
        empty_db,
        JOBTRAIL_APP_ROLE_PASSWORD=password,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert password not in migrated.stdout + migrated.stderr
    report = json.loads(migrated.stdout)["app_role"]
    assert report == {
        "created": True,
        "role": role_name,
        "login": True,
        "safe": True,
        "complete": True,
        "unsafe": [],
        "missing": [],
    }

    parts = urlsplit(empty_db)
    server = parts.netloc.rpartition("@")[2]
    as_role = parts._replace(netloc=f"{role_name}:{password}@{server}").geturl()
    conn = await asyncpg.connect(as_role)
    try:
        await conn.execute("SET jobtrail.archiving = 'on'")
        for statement in ("DELETE FROM jobtrail.events", "TRUNCATE jobtrail.events"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()

    checked = run(["db", "check-role", role_name], empty_db)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{role_name} cannot UPDATE/DELETE/TRUNCATE jobtrail.events" in checked.stdout


async def test_check_role_exits_4_naming_what_is_unsafe_and_migrate_repairs_it(
    empty_db: str, role_name: str
) -> None:
    assert run(["db", "migrate", "--app-role", role_name], empty_db).returncode == 0
    conn = await asyncpg.connect(empty_db)
    try:
        await conn.execute(f'GRANT DELETE, TRUNCATE ON jobtrail.events TO "{role_name}"')
    finally:
        await conn.close()

    checked = run(["db", "check-role", role_name], empty_db)
    assert checked.returncode == 4
    assert f"UNSAFE: {role_name} can DELETE/TRUNCATE jobtrail.events" in checked.stdout
    assert "cannot UPDATE" not in checked.stdout

    repaired = run(["db", "migrate", "--app-role", role_name], empty_db)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "already existed, NOLOGIN, granted" in repaired.stdout
    assert run(["db", "check-role", role_name], empty_db).returncode == 0


@pytest.mark.parametrize("name", ["Robert'); DROP TABLE jobtrail.events; --", "pg_monitor", "App"])
def test_db_migrate_refuses_a_role_name_that_is_not_a_plain_identifier(
    empty_db: str, name: str
) -> None:
    result = run(["db", "migrate", "--app-role", name], empty_db)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: invalid role name {name!r}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert run(["db", "status"], empty_db).returncode == 3, "nothing was migrated"


def test_db_migrate_refuses_a_superuser_as_the_app_role(empty_db: str) -> None:
    result = run(["db", "migrate", "--app-role", "postgres"], empty_db)
    assert result.returncode == 1
    assert "role postgres is a superuser: an application role must not be" in result.stderr
    assert "Traceback" not in result.stderr
