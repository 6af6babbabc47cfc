"""A runner in another process is killed (SIGKILL) while leading: a standby takes over."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import asyncpg
import pytest

import jobstore
import projections
from tests.projection_support import append, dispatched, new_job_id

LEADER = """
import asyncio, sys
import structlog
import jobstore, projections

structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))

async def main(dsn):
    pool = await jobstore.create_pool(dsn, min_size=1, max_size=4)
    runner = projections.ProjectionRunner(pool, dsn, leader_retry=0.1)
    task = asyncio.create_task(runner.run())
    for name in ("job_attempts", "job_executions"):
        await runner.leading(name).wait()
    print("leading", flush=True)
    await task

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.slow
async def test_a_standby_takes_over_from_a_killed_leader_process(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    leader = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LEADER, db_dsn, stdout=asyncio.subprocess.PIPE
    )
    standby = projections.ProjectionRunner(pool, db_dsn, leader_retry=0.1)
    task: asyncio.Task[None] | None = None
    try:
        assert leader.stdout is not None
        assert await asyncio.wait_for(leader.stdout.readline(), 60) == b"leading\n"
        task = asyncio.create_task(standby.run())
        store = jobstore.EventStore(pool)
        job = new_job_id()
        await projections.wait_for_position(pool, await append(store, job, dispatched(job)))
        assert not standby.leading("job_executions").is_set()

        leader.kill()
        await leader.wait()
        started = asyncio.get_running_loop().time()
        for name in ("job_attempts", "job_executions"):
            await asyncio.wait_for(standby.leading(name).wait(), 10)
        took = asyncio.get_running_loop().time() - started

        job = new_job_id()
        await projections.wait_for_position(pool, await append(store, job, dispatched(job)))
        assert took < 10
        assert await pool.fetchval("SELECT count(*) FROM jobtrail.job_executions") == 2
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if leader.returncode is None:
            leader.kill()
            await leader.wait()
