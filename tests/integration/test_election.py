"""Elections: one holder of a role at a time, handed over when the holder's session ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

import jobstore


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``check`` until it is true, failing after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def sessions(pool: asyncpg.Pool) -> int:
    """Sessions on the test's database that last ran an election's query."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE '%advisory_lock%'"
        )
    )


async def test_of_two_electors_only_one_leads(db_dsn: str) -> None:
    first = jobstore.Election(db_dsn, "relay", retry=0.05)
    second = jobstore.Election(db_dsn, "relay", retry=0.05)
    async with first.lead() as lease:
        assert lease.held
        with pytest.raises(jobstore.LeadershipUnavailable, match="'relay'"):
            async with second.lead(give_up_after=0.3):
                pytest.fail("two holders of one role")
        async with jobstore.Election(db_dsn, "job_attempts").lead(give_up_after=1) as other:
            assert other.held, "another name is another role"
    async with second.lead(give_up_after=1) as lease:
        assert lease.held, "released when the holder's block ended"


async def test_killing_the_leaders_connection_hands_the_role_over(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    leader = jobstore.Election(db_dsn, "relay", retry=0.05)
    standby = jobstore.Election(db_dsn, "relay", retry=0.05)
    took_over = asyncio.Event()

    async def wait_to_lead() -> None:
        async with standby.lead():
            took_over.set()
            await asyncio.sleep(3600)

    async with leader.lead() as lease:
        waiting = asyncio.create_task(wait_to_lead())
        try:
            await asyncio.sleep(0.3)
            assert not took_over.is_set()
            assert not await lease.wanted(), "a standby tries; it does not queue"
            await pool.execute("SELECT pg_terminate_backend($1)", lease.conn.get_server_pid())
            await asyncio.wait_for(took_over.wait(), 10)
            with pytest.raises(jobstore.LeadershipLost):
                await lease.wanted()
            assert not lease.held
        finally:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting


async def test_a_queued_waiter_is_seen_by_the_holder_and_gets_the_role_next(db_dsn: str) -> None:
    holder = jobstore.Election(db_dsn, "job_executions")

    async def queue() -> bool:
        async with jobstore.Election(db_dsn, "job_executions").queue(give_up_after=10) as lease:
            return lease.held

    async with holder.lead() as lease:
        queued = asyncio.create_task(queue())
        await eventually(lease.wanted)
        assert not queued.done()
    assert await asyncio.wait_for(queued, 10)


async def test_a_holder_cancelled_while_giving_the_role_up_leaks_no_session(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    before = await sessions(pool)
    holding = asyncio.Event()

    async def hold() -> None:
        async with jobstore.Election(db_dsn, "relay").lead():
            holding.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(hold())
    await holding.wait()
    task.cancel()
    await asyncio.sleep(0)  # the holder is now closing its session…
    task.cancel()  # …and is cancelled again, mid-close
    with contextlib.suppress(asyncio.CancelledError):
        await task

    async with jobstore.Election(db_dsn, "relay").lead(give_up_after=2) as lease:
        assert lease.held
    await eventually(lambda: _equal(sessions(pool), before))


async def _equal(count: Awaitable[int], expected: int) -> bool:
    return await count == expected
