"""A background task that dies is restarted, and the host says so meanwhile (issue 15, point 2).

The projection runner is made to die (an injected failure: asyncpg's InternalClientError,
which a PostgreSQL restart can raise), and to keep dying on restart while the fault lasts.
Meanwhile ``/readyz`` answers 503 naming the task, ``/metrics`` shows it down and counts
its restarts, and ``jobtrail projections status`` shows it restarting with the error.
Once the fault is gone it runs again: ready, up, and the views catch up with the log.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

import projections
from tests.cli_support import jobtrail
from tests.host_support import Host, running_host

FAULT = "cannot switch to state 15; another operation is in progress"


class Fault:
    """Kills the projection runner on demand, and keeps killing it while ``broken``."""

    def __init__(self) -> None:
        self.broken = False
        self.kill = asyncio.Event()
        self.runs = 0

    def wrap(self, run: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def faulty(runner: Any) -> None:
            self.runs += 1
            if self.broken:
                raise asyncpg.InternalClientError(FAULT)
            real = asyncio.create_task(run(runner))
            killed = asyncio.create_task(self.kill.wait())
            done, _ = await asyncio.wait({real, killed}, return_when=asyncio.FIRST_COMPLETED)
            if real in done:
                killed.cancel()
                return await real
            real.cancel()
            await asyncio.gather(real, return_exceptions=True)
            raise asyncpg.InternalClientError(FAULT)

        return faulty


async def get(host: Host, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(host.url + path) as response:
        return response.status, await response.text()


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.05)


def metric(text: str, name: str, task: str) -> float:
    found = re.search(rf'^{name}{{task="{task}"}} (\S+)$', text, re.MULTILINE)
    assert found, f"{name} for {task} missing from:\n{text}"
    return float(found[1])


async def test_a_dead_required_task_is_restarted_and_reported_meanwhile(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = Fault()
    monkeypatch.setattr(
        projections.ProjectionRunner, "run", fault.wrap(projections.ProjectionRunner.run)
    )
    async with running_host(db_dsn) as host:

        async def ready() -> bool:
            return (await get(host, "/readyz"))[0] == 200

        await until(ready, "the host is ready")
        fault.broken = True
        fault.kill.set()

        async def reported_down() -> bool:
            status, body = await get(host, "/readyz")
            return status == 503 and "background task down" in body

        await until(reported_down, "/readyz reports the dead task")
        status, body = await get(host, "/readyz")
        down = orjson.loads(body)
        assert status == 503, body
        assert [t["task"] for t in down["tasks"]] == ["projections"], body
        assert FAULT in down["tasks"][0]["last_error"], body
        _, text = await get(host, "/metrics")
        assert metric(text, "jobtrail_background_task_up", "projections") == 0
        assert metric(text, "jobtrail_background_task_restarts_total", "projections") >= 1
        assert metric(text, "jobtrail_background_task_up", "relay") == 1

        job_id = await host.enqueue(tag="while the views are down")
        status_cli = await jobtrail(db_dsn, "projections", "status", "--json")
        assert status_cli.code == 3, status_cli
        (report,) = orjson.loads(status_cli.out)["hosts"]
        assert report["state"] == "restarting" and FAULT in report["last_error"], report

        fault.broken = False  # the fault is gone: the next restart sticks
        fault.kill.clear()
        await until(ready, "the host is ready again once the task runs")
        _, text = await get(host, "/metrics")
        assert metric(text, "jobtrail_background_task_up", "projections") == 1
        await host.wait_status(job_id, "completed", within=60)  # the views caught up

        async def reported_running() -> bool:
            result = await jobtrail(db_dsn, "projections", "status", "--json")
            (report,) = orjson.loads(result.out)["hosts"]
            return result.code == 0 and report["state"] == "running"

        await until(reported_running, "projections status shows the runner running again")
        assert fault.runs >= 3  # started, killed, restarted while broken, restarted for good
