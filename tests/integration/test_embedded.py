"""The embedded PostgreSQL: starts, is reused, stops, and survives a killed owner.

These tests always start an embedded server of their own, whatever DATABASE_URL says,
so CI covers the nothing-to-install path too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

import jobstore
from tests.events import Noted

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().splitlines()[0])
    return pid if psutil.pid_exists(pid) else None


async def test_embedded_server_runs_migrations_and_the_event_store(embedded_dir: Path) -> None:
    settings = jobstore.Settings(database_url=None, data_dir=embedded_dir / "state")
    async with jobstore.open_database(settings) as db:
        assert db.embedded
        await jobstore.migrate(db.dsn)
        store = jobstore.EventStore(db.pool)
        await store.append("s", [Noted(n=7)], "no_stream")
        assert [e.event for e in await store.read_stream("s")] == [Noted(n=7)]
        version = await db.pool.fetchval("SHOW server_version_num")
        assert int(version) >= 150000
    assert _postmaster_pid(settings.pgdata_dir) is None, "the last owner stops the server"

    async with jobstore.open_database(settings) as db:
        store = jobstore.EventStore(db.pool)
        assert len(await store.read_stream("s")) == 1, "the data folder is reused"


def test_server_left_by_an_owner_killed_with_sigkill_does_not_block_the_next_start(
    embedded_dir: Path,
) -> None:
    pgdata = embedded_dir / "state" / "pgdata"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time, jobstore
                server = jobstore.EmbeddedPostgres(__import__("pathlib").Path({str(pgdata)!r}))
                print(server.start(), flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().startswith("postgresql://")
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()

    server = jobstore.EmbeddedPostgres(pgdata)
    dsn = server.start()
    assert dsn.startswith("postgresql://")
    assert _postmaster_pid(pgdata) is not None
    server.stop()
    assert _postmaster_pid(pgdata) is None, "the killed owner's handle must not keep it alive"


def test_embedded_server_works_for_a_normal_user(embedded_dir: Path) -> None:
    """Started by an unprivileged user, it changes no permissions and runs as that user."""
    if os.geteuid() != 0:
        user_dir = embedded_dir
    else:
        user_dir = Path("/tmp") / f"jobtrail-nobody-{os.getpid()}"
        user_dir.mkdir(exist_ok=True)
        os.chown(user_dir, 65534, 65534)
    script = textwrap.dedent(
        f"""
        import asyncio, os, pathlib, jobstore
        async def main():
            folder = pathlib.Path({str(user_dir)!r}) / "s"
            settings = jobstore.Settings(database_url=None, data_dir=folder)
            async with jobstore.open_database(settings) as db:
                await jobstore.migrate(db.dsn)
                print(os.geteuid(), await db.pool.fetchval("SELECT current_user"))
        asyncio.run(main())
        """
    )
    command = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {**os.environ, "HOME": str(user_dir)}
    env.pop("DATABASE_URL", None)
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        uid, db_user = result.stdout.splitlines()[-1].split()
        assert int(uid) == (65534 if os.geteuid() == 0 else os.geteuid())
        assert db_user == "postgres"
    finally:
        if os.geteuid() == 0:
            subprocess.run(["rm", "-rf", str(user_dir)], check=False)
