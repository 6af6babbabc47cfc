"""Run ``jobtrail`` commands as real subprocesses (serve, qstash-dev) and clean them up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

import qstash_local

ROOT = Path(__file__).resolve().parents[1]
JOBTRAIL = [sys.executable, "-c", "from workers.cli import main; main()"]


class Process:
    """A ``jobtrail`` subprocess whose output goes to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        """Start (or restart) the process."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*JOBTRAIL, *self.args],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye (a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def processes() -> Iterator[list[Process]]:
    """A list to register processes in; every one is killed when the block ends."""
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            process.kill()


def env_for(**values: str) -> dict[str, str]:
    """This environment plus ``values`` (with QStash's dev token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSTASH_", "JOBTRAIL_"))}
    env["QSTASH_TOKEN"] = qstash_local.DEV_TOKEN
    env.update(values)
    return env


async def wait_http(url: str, within: float = 30.0) -> None:
    """Wait until ``url`` answers 200."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not come up within {within}s")
            await asyncio.sleep(0.1)
