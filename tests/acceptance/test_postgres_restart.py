"""PostgreSQL restarts while jobs flow: the host answers 503, reconnects, loses nothing.

The test restarts a private PostgreSQL of its own (an embedded server in a temporary
folder), never the shared one.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest

import jobstore
from tests.processes import serve_stack
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
            assert abandoned >= 1, "the outage hit attempts whose outcome could not be recorded"
        finally:
            await pool.close()
        assert serve.terminate() == 0
    assert '"status": 503' in serve.output() or "database unavailable" in serve.output()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
