"""A database outage is a 503 with Retry-After, never a 500; a short one is ridden out.


Issue 15, point 3.
Each test runs its own PostgreSQL (an embedded server in a temporary folder) so it can
crash and restart it; never the shared one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

import jobstore
from tests.host_support import TEST_PATH, Host, dispatched, running_host

pytestmark = [pytest.mark.slow, pytest.mark.embedded]
STREAM_LOCK_CLASS = 72440126  # jobtrail.lock_for_append's advisory-lock class of streams


@pytest.fixture
async def private_server() -> AsyncIterator[tuple[str, jobstore.EmbeddedPostgres]]:
    # Not under pytest's temporary folder: a concurrent pytest run resets its permissions
    # to 0700, which would lock the embedded server's own user out of its data folder.
    folder = Path(tempfile.mkdtemp(prefix="jobtrail-pg-503-"))
    server = jobstore.EmbeddedPostgres(folder / "pgdata")
    dsn = await asyncio.to_thread(server.start)
    try:
        await jobstore.migrate(dsn)
        yield dsn, server
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(folder, ignore_errors=True)


async def new_job(host: Host) -> tuple[str, dict[str, object]]:
    """A job dispatched by hand (no relay: the test is the only one to deliver it)."""
    job_id = str(uuid.uuid4())
    event = dispatched(job_id, retries=3, timeout=5.0)
    await host.ctx.store.append(f"job-{job_id}", [event])
    return job_id, jobstore.envelope.job_body(event)


async def test_a_connection_lost_mid_request_is_a_503_with_retry_after(
    private_server: tuple[str, jobstore.EmbeddedPostgres],
) -> None:
    """The append of JobStarted is waiting when its server process dies (SIGKILL): asyncpg
    raises ConnectionDoesNotExistError, a PostgresError; the answer is 503, not 500."""
    dsn, _server = private_server
    async with running_host(dsn, relay=False, notifier=False) as host:
        job_id, body = await new_job(host)
        blocker = await asyncpg.connect(dsn)
        try:  # hold the stream's append lock, so the delivery's append waits on it
            await blocker.execute(
                "SELECT pg_advisory_lock($1, hashtext($2))", STREAM_LOCK_CLASS, f"job-{job_id}"
            )
            delivery = asyncio.create_task(host.post(TEST_PATH, body))
            pid = None
            while pid is None:
                assert not delivery.done(), delivery.result()
                pid = await blocker.fetchval(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND classid = $1::int4::oid",
                    STREAM_LOCK_CLASS,
                )
                await asyncio.sleep(0.02)
            os.kill(pid, signal.SIGKILL)  # the host's backend dies mid-statement
            status, answer, headers = await delivery
        finally:
            blocker.terminate()
        assert status == 503, answer
        assert answer == {"error": "database unavailable; retry later"}
        assert int(headers["Retry-After"]) > 0
        assert "job.completed" not in await host.types(job_id)  # and nothing ran


async def test_a_delivery_rides_out_a_short_database_restart(
    private_server: tuple[str, jobstore.EmbeddedPostgres],
) -> None:
    """PostgreSQL stops while no delivery runs, a delivery arrives and waits for it (the
    store counts the wait), the server comes back: the delivery runs and answers 200."""
    dsn, server = private_server
    async with running_host(dsn, relay=False, notifier=False, database_ride_out_seconds=60) as host:
        job_id, body = await new_job(host)
        await asyncio.to_thread(server.stop)
        waits_before = host.ctx.store.runner.waits
        delivery = asyncio.create_task(host.post(TEST_PATH, body))
        while host.ctx.store.runner.waits == waits_before:  # it met the outage, and waits
            assert not delivery.done(), delivery.result()
            await asyncio.sleep(0.02)
        await asyncio.to_thread(server.start)
        status, answer, _headers = await delivery
        assert status == 200, answer
        kinds = await host.types(job_id)
        assert kinds.count("job.started") == 1 and kinds.count("job.completed") == 1, kinds
        assert len(host.handler.calls) == 1


async def test_without_ride_out_the_outage_is_answered_at_once_with_503(
    private_server: tuple[str, jobstore.EmbeddedPostgres],
) -> None:
    dsn, server = private_server
    async with running_host(dsn, relay=False, notifier=False, database_ride_out_seconds=0) as host:
        job_id, body = await new_job(host)
        await asyncio.to_thread(server.stop)
        try:
            status, answer, headers = await host.post(TEST_PATH, body)
            callback_status, _, callback_headers = await host.post(
                jobstore.envelope.FAILURE_CALLBACK_PATH,
                {"sourceBody": _b64(body), "status": 500},
            )
        finally:
            await asyncio.to_thread(server.start)
        assert (status, answer) == (503, {"error": "database unavailable; retry later"})
        assert int(headers["Retry-After"]) > 0
        assert callback_status == 503 and int(callback_headers["Retry-After"]) > 0
        assert host.handler.calls == []
        assert await host.types(job_id) == ["job.dispatched"]


def _b64(body: dict[str, object]) -> str:
    import base64

    import orjson

    return base64.b64encode(orjson.dumps(body)).decode()
