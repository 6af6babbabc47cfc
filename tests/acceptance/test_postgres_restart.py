"""PostgreSQL restarts while jobs flow: the host answers 503, reconnects, loses nothing.

The test restarts a private PostgreSQL of its own (an embedded server in a temporary
folder), never the shared one.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

import jobstore
import projections
from tests.cli_support import jobtrail
from tests.processes import serve_stack, wait_http
from tests.serve_app import registry

pytestmark = [pytest.mark.slow, pytest.mark.embedded]


async def test_host_survives_a_postgres_restart_and_records_every_job_once(
    tmp_path: Path,
) -> None:
    # Not under pytest's temporary folder: a concurrent pytest run resets its permissions
    # to 0700, which would lock the embedded server's own user out of its data folder.
    folder = Path(tempfile.mkdtemp(prefix="jobtrail-pg-restart-"))
    server = jobstore.EmbeddedPostgres(folder / "pgdata")
    dsn = await asyncio.to_thread(server.start)
    try:
        await jobstore.migrate(dsn)
        await _run(dsn, server, tmp_path)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(folder, ignore_errors=True)


async def _run(dsn: str, server: jobstore.EmbeddedPostgres, tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    async with serve_stack(dsn, tmp_path, JOBTRAIL_LEASE_GRACE_SECONDS="0.2") as stack:
        serve = stack.serve
        pool = await jobstore.create_pool(dsn, min_size=1, max_size=2)
        dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool), registry(None))  # type: ignore[arg-type]
        job_ids = [
            await dispatcher.enqueue("slow-job", {"seconds": 1.0, "marker": str(marker)})
            for _ in range(10)
        ]
        await pool.close()
        deadline = time.monotonic() + 20
        while not await asyncio.to_thread(_lines, marker):  # handlers are running…
            assert time.monotonic() < deadline, serve.output()[-3000:]
            await asyncio.sleep(0.05)

        await asyncio.to_thread(server.stop)  # PostgreSQL goes away mid-flow…
        await asyncio.sleep(2)
        await asyncio.to_thread(server.start)  # …and comes back

        pool = await jobstore.create_pool(dsn, min_size=1, max_size=2)
        try:
            store = jobstore.EventStore(pool)
            deadline = time.monotonic() + 90
            while True:
                states = [await jobstore.Dispatcher(store).load(j) for j in job_ids]
                if all(s is not None and s.status.value == "completed" for s in states):
                    break
                assert time.monotonic() < deadline, f"not all completed:\n{serve.output()[-3000:]}"
                await asyncio.sleep(0.2)
            abandoned = 0
            for job_id in job_ids:
                events = [r.event for r in await store.read_stream(f"job-{job_id}")]
                kinds = [e.type_name for e in events]
                assert kinds.count("job.completed") == 1, kinds
                assert kinds.count("job.dispatched") == 1, kinds
                abandoned += sum(bool(getattr(e, "abandoned", False)) for e in events)
            # The outage hit attempts in flight: their outcomes waited for the database
            # (JOBTRAIL_DATABASE_RIDE_OUT_SECONDS) or, past that, they were abandoned.
            waits = await _metric(stack.host_url, "jobtrail_database_outage_waits_total")
            assert abandoned >= 1 or waits > 0, "the outage hit no attempt in flight"
            for _ in range(2):  # more restarts, each while the host's tasks are running
                await asyncio.to_thread(server.stop)
                await asyncio.to_thread(server.start)
            await _views_catch_up(dsn, store, job_ids, stack.host_url)
        finally:
            await pool.close()
        assert serve.terminate() == 0
    assert '"status": 503' in serve.output() or "database unavailable" in serve.output()


async def _views_catch_up(
    dsn: str, store: jobstore.EventStore, job_ids: list[str], host_url: str
) -> None:
    """After the restarts the host is ready, its projection runner runs, and the views
    agree with the log (issue 15, point 2: a runner that died used to stay dead)."""
    await wait_http(host_url + "/readyz", within=120)
    head = await store.last_position()
    await projections.wait_for_position(store.pool, head, timeout=120)
    dispatcher = jobstore.Dispatcher(store)
    for job_id in job_ids:
        state = await dispatcher.load(job_id)
        view = await dispatcher.get_job_execution_by_job_id(job_id)
        assert state is not None and view is not None, job_id
        assert (view.status, view.attempts) == (state.status, state.attempts), job_id
    result = await jobtrail(dsn, "projections", "status", "--json")
    assert result.code == 0, result
    hosts = orjson.loads(result.out)["hosts"]
    assert hosts and all(h["state"] == "running" for h in hosts if not h["stale"]), hosts


async def _metric(host_url: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(host_url + "/metrics") as got:
        text = await got.text()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
