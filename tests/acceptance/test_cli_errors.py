"""Errors a newcomer meets print one clear line, not a traceback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import qstash_local
from tests.host_support import free_port
from tests.processes import env_for

JOBTRAIL = [sys.executable, "-c", "from workers.cli import main; main()"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBTRAIL, *args], env=env, capture_output=True, text=True, timeout=120)


def _one_clear_line(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert says in errors[0]


def test_serve_with_postgres_unreachable(tmp_path: Path) -> None:
    env = env_for(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    del env["QSTASH_TOKEN"]  # the in-process qstash_local
    result = run(["serve", "--port", str(free_port())], env)
    _one_clear_line(result, "cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/none")


def test_serve_on_a_port_in_use(db_dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = env_for(DATABASE_URL=db_dsn)
        del env["QSTASH_TOKEN"]  # the in-process qstash_local
        result = run(["serve", "--port", str(port)], env)
    _one_clear_line(result, f"cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize("token", ["wrong-token"])
async def test_serve_with_a_token_qstash_rejects(db_dsn: str, token: str) -> None:
    async with qstash_local.serve(port=0) as qstash:
        env = env_for(DATABASE_URL=db_dsn, QSTASH_URL=qstash.url, QSTASH_TOKEN=token)
        result = await asyncio.to_thread(
            run, ["serve", "--port", str(free_port()), "--no-qstash"], env
        )
    _one_clear_line(result, "rejected QSTASH_TOKEN")
