"""The processes of a fault-injection run: a private PostgreSQL, ``jobtrail qstash-dev`` and
``jobtrail serve``, each one killable and restartable on the same address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

import jobstore
import qstash_local
from tests.chaos import app
from tests.chaos.postgres import PrivatePostgres, free_port
from tests.processes import Process, env_for

READY_WITHIN_S = 60.0


@dataclass(frozen=True)
class Timing:
    """The host's timing knobs: fast enough for a short run to settle."""

    sweep_interval: float = 1.0
    sweep_min_age: float = 3.0
    lease_grace: float = 0.5
    retry_delay_scale: float = 0.0002
    """QStash's own retry delays scaled down: its fifth retry and later wait 17 s, not a day."""


class Cluster:
    """PostgreSQL, qstash_local and ``hosts`` hosts as separate processes, logs in ``folder``.

    The hosts share the database and qstash_local, each with its own address (its public
    URL): QStash delivers a dispatch to the host whose relay published it (the relay's
    leader of the moment); duplicates and API calls go to any host.
    """

    def __init__(self, folder: Path, timing: Timing | None = None, hosts: int = 1) -> None:
        self.folder = folder
        self.timing = timing or Timing()
        self.pg = PrivatePostgres()
        self.runs_file = folder / "runs.txt"
        for stale in folder.glob("*.log"):  # a kept folder of an earlier run
            stale.unlink()
        self.runs_file.unlink(missing_ok=True)
        self.api_token = secrets.token_urlsafe(24)
        qstash_port = free_port()
        self.qstash_url = f"http://127.0.0.1:{qstash_port}"
        t = self.timing
        self.env = env_for(
            DATABASE_URL=self.pg.dsn,
            QSTASH_URL=self.qstash_url,
            JOBTRAIL_APP="tests.chaos.app:registry",
            JOBTRAIL_API_TOKEN=self.api_token,
            JOBTRAIL_SWEEP_INTERVAL=str(t.sweep_interval),
            JOBTRAIL_SWEEP_MIN_AGE=str(t.sweep_min_age),
            JOBTRAIL_LEASE_GRACE_SECONDS=str(t.lease_grace),
            JOBTRAIL_LOG_LEVEL="warning",
            **{app.RUNS_VARIABLE: str(self.runs_file)},
        )
        self.qstash = Process(
            [
                *("qstash-dev", "--port", str(qstash_port)),
                *("--retry-delay-scale", str(t.retry_delay_scale)),
            ],
            self.env,
            folder / "qstash.log",
        )
        self.hosts: list[Process] = []
        self.host_urls: list[str] = []
        for n in range(hosts):
            port = free_port()
            env = {**self.env, "JOBTRAIL_DATA_DIR": str(folder / f"host{n}-data")}
            self.hosts.append(
                Process(
                    ["serve", "--port", str(port), "--no-qstash", "--grace", "2"],
                    env,
                    folder / f"host{n}.log",
                )
            )
            self.host_urls.append(f"http://127.0.0.1:{port}")
        self.crashes: list[str] = []
        """Processes found dead that no fault had stopped (each was started again)."""
        self._down: set[str] = set()

    async def start(self) -> None:
        """Create and start PostgreSQL, migrate it, then start qstash_local and the host."""
        await asyncio.to_thread(self.pg.init)
        await asyncio.to_thread(self.pg.start)
        await jobstore.migrate(self.pg.dsn)
        await self.start_qstash()
        for n in range(len(self.hosts)):
            await self.start_host(n)

    async def stop(self) -> None:
        """Stop everything (SIGTERM the host so it finishes in-flight work), remove PostgreSQL."""
        for host in self.hosts:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(host.terminate, 15)
            host.kill()
        self.qstash.kill()
        await asyncio.to_thread(self.pg.destroy)

    async def start_qstash(self) -> None:
        """Start qstash_local (empty: its state lives in memory) and wait until it answers."""
        url = f"{self.qstash_url}/v2/keys?qstash_token={qstash_local.DEV_TOKEN}"
        await self._start("qstash_local", self.qstash, url)

    async def start_host(self, n: int = 0) -> None:
        """Start host ``n`` and wait until its ``/readyz`` answers 200."""
        await self._start(f"host{n}", self.hosts[n], self.host_urls[n] + "/readyz")

    async def _start(self, name: str, process: Process, url: str, tries: int = 3) -> None:
        """Start ``process``; one that exits while starting (its database restarting, say)
        is started again, up to ``tries`` times."""
        for attempt in range(1, tries + 1):
            process.start()
            try:
                await _until_ok(url, lambda: _alive(process, name))
            except RuntimeError:
                if attempt == tries:
                    raise
                process.kill()
                await asyncio.sleep(1.0)
            else:
                self._down.discard(name)
                return

    async def revive(self) -> None:
        """Start again any process that died without a fault stopping it, noting the crash."""
        processes = [("qstash_local", self.qstash, self.start_qstash)]
        processes += [
            (f"host{n}", host, functools.partial(self.start_host, n))
            for n, host in enumerate(self.hosts)
        ]
        for name, process, start in processes:
            proc = process.proc
            if name in self._down or proc is None or proc.poll() is None:
                continue
            self.crashes.append(
                f"{name} exited with {proc.returncode}: {process.output()[-600:]!r}"
            )
            await start()

    def kill_host(self, n: int = 0) -> None:
        """SIGKILL host ``n``: its in-flight attempts are left without an outcome."""
        self._down.add(f"host{n}")
        self.hosts[n].kill()

    async def stall_host(self, n: int, seconds: float) -> None:
        """SIGSTOP host ``n`` for ``seconds``, then SIGCONT: a paused process, leases running
        out while its attempts are in flight (their outcomes then arrive late)."""
        proc = self.hosts[n].proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            proc.send_signal(signal.SIGCONT)

    def kill_qstash(self) -> None:
        """SIGKILL qstash_local: every message it held is gone."""
        self._down.add("qstash_local")
        self.qstash.kill()

    def host_log(self) -> str:
        """Everything the hosts wrote, over all their lives."""
        return "\n".join(host.output() for host in self.hosts)


def _alive(process: Process, name: str) -> None:
    if process.proc is not None and process.proc.poll() is not None:
        code = process.proc.returncode
        raise RuntimeError(f"{name} exited with {code}:\n{process.output()[-3000:]}")


async def _until_ok(url: str, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            check()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer 200 within {READY_WITHIN_S:.0f} s")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running(
    folder: Path, timing: Timing | None = None, hosts: int = 1
) -> AsyncIterator[Cluster]:
    """A started cluster, stopped and removed when the block ends."""
    cluster = Cluster(folder, timing, hosts)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
