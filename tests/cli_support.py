"""Running ``jobtrail`` in a subprocess for the CLI tests, and checking its one-line errors."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

JOBTRAIL = [sys.executable, "-c", "from workers.cli import main; main()"]


@dataclass(frozen=True)
class Result:
    """What a ``jobtrail`` run printed, and its exit code."""

    code: int
    out: str
    err: str


async def jobtrail(dsn: str, *args: str, stdin: str = "") -> Result:
    """Run ``jobtrail args`` with DATABASE_URL=dsn; wide output, so tables keep whole ids."""
    proc = await start(dsn, *args)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def start(dsn: str, *args: str) -> asyncio.subprocess.Process:
    """Start ``jobtrail args`` with DATABASE_URL=dsn, its stdin, stdout and stderr piped."""
    env = {**os.environ, "DATABASE_URL": dsn, "COLUMNS": "200"}
    return await asyncio.create_subprocess_exec(
        *JOBTRAIL,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def one_line_error(result: Result, code: int, *fragments: str) -> None:
    """The command failed with ``code`` and one line naming every fragment, no traceback."""
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0], result.err
