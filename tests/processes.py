"""Run ``jobtrail`` commands as real subprocesses (serve, qstash-dev) and clean them up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
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


async def wait_http(url: str, within: float = 90.0) -> None:
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


@dataclass
class Stack:
    """``jobtrail qstash-dev`` and ``jobtrail serve --no-qstash`` as real processes."""

    qstash: Process
    serve: Process
    qstash_url: str
    host_url: str
    env: dict[str, str]

    async def wait_qstash(self) -> None:
        """Wait until qstash-dev answers."""
        await wait_http(self.qstash_url + "/v2/keys?qstash_token=" + self.env["QSTASH_TOKEN"])

    async def wait_host(self) -> None:
        """Wait until the host is ready."""
        await wait_http(self.host_url + "/readyz")


@contextlib.asynccontextmanager
async def serve_stack(
    db_dsn: str,
    logs: Path,
    *,
    scale: str = "0.0003",
    serve_args: tuple[str, ...] = (),
    **env_values: str,
) -> AsyncIterator[Stack]:
    """Start qstash-dev and serve (with the test application registry); kill both after."""
    qstash_port, host_port = _free_port(), _free_port()
    qstash_url = f"http://127.0.0.1:{qstash_port}"
    values = {
        "JOBTRAIL_APP": "tests.serve_app:registry",
        "JOBTRAIL_SWEEP_INTERVAL": "3600",
        **env_values,
    }
    env = env_for(DATABASE_URL=db_dsn, QSTASH_URL=qstash_url, **values)
    with processes() as running:
        qstash = Process(
            ["qstash-dev", "--port", str(qstash_port), "--retry-delay-scale", scale],
            env,
            logs / "qstash.log",
        )
        serve = Process(
            ["serve", "--port", str(host_port), "--no-qstash", *serve_args], env, logs / "serve.log"
        )
        running += [qstash.start(), serve]
        stack = Stack(qstash, serve, qstash_url, f"http://127.0.0.1:{host_port}", env)
        await stack.wait_qstash()
        serve.start()
        await stack.wait_host()
        yield stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
