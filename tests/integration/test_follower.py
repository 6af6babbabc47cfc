"""Followers of the log: stop at an event they cannot handle, never skip it, and resume."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import asyncpg
import pytest

import jobstore
from tests.events import Noted


class Recorder:
    """Records each event's position in ``seen`` (a primary key: twice would fail)."""

    def __init__(self, bad: set[int] | None = None) -> None:
        self.bad = bad or set()

    async def handle(
        self, batch: Sequence[jobstore.RecordedEvent], commit: jobstore.follower.Commit
    ) -> None:
        async with commit() as conn:
            for recorded in batch:
                if recorded.position in self.bad:
                    raise ValueError(f"cannot handle {recorded.position}")
            await conn.executemany("INSERT INTO seen VALUES ($1)", [(r.position,) for r in batch])


@pytest.fixture
async def seen(pool: asyncpg.Pool) -> asyncpg.Pool:
    await pool.execute("CREATE TABLE public.seen (position bigint PRIMARY KEY)")
    return pool


async def positions(pool: asyncpg.Pool) -> list[int]:
    return [r[0] for r in await pool.fetch("SELECT position FROM seen ORDER BY position")]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``check`` until it is true, failing after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(follower: jobstore.Follower) -> AsyncIterator[None]:
    task = asyncio.create_task(follower.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def follower_of(
    store: jobstore.EventStore, dsn: str, handler: Recorder, **config: float
) -> jobstore.Follower:
    settings = {"batch_size": 10, "idle_poll": 0.1, "leader_retry": 0.05, **config}
    return jobstore.Follower(
        store,
        "notes",
        handler,
        dsn=dsn,
        config=jobstore.FollowerConfig(**settings),  # type: ignore[arg-type]
    )


async def failure(pool: asyncpg.Pool) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT position, stream_id, event_type, error FROM jobtrail.projection_failures "
        "WHERE name = 'notes'"
    )
    return row


async def test_a_follower_stops_at_a_bad_event_without_skipping_it_and_resumes_once_fixed(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool
) -> None:
    p = await store.append("notes-1", [Noted(n=i) for i in range(5)])
    handler = Recorder(bad={p[2]})
    follower = follower_of(store, db_dsn, handler, failure_retry=0.1)

    with pytest.raises(jobstore.FollowerStopped) as stopped:
        await follower.run_until_caught_up()
    assert (stopped.value.position, stopped.value.event_type) == (p[2], "test.noted")
    assert await positions(seen) == p[:2], "the events before it were handled, once"
    assert (await jobstore.checkpoint.read(seen, "notes")).position == p[1]
    recorded = await failure(seen)
    assert recorded is not None
    assert (recorded["position"], recorded["stream_id"]) == (p[2], "notes-1")
    assert f"cannot handle {p[2]}" in recorded["error"]

    async with running(follower):
        await asyncio.sleep(0.5)  # it tries again, more than once, and stops there again
        assert await positions(seen) == p[:2]
        assert (await jobstore.checkpoint.read(seen, "notes")).position == p[1]
        handler.bad.clear()  # the bug is fixed
        await eventually(lambda: _at(seen, p[-1]))
    assert await positions(seen) == p
    assert await failure(seen) is None


async def _at(pool: asyncpg.Pool, position: int) -> bool:
    return (await jobstore.checkpoint.read(pool, "notes")).position == position


async def test_a_notification_wakes_an_idle_follower(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool
) -> None:
    follower = follower_of(store, db_dsn, Recorder(), idle_poll=60)
    async with running(follower):
        await asyncio.wait_for(follower.leading.wait(), 10)
        await asyncio.sleep(0.2)  # now waiting, for a minute unless notified
        (position,) = await store.append("notes-1", [Noted(n=1)])
        await eventually(lambda: _at(seen, position), within=5)


async def test_the_idle_poll_delivers_what_a_lost_notification_did_not(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool
) -> None:
    await seen.execute("ALTER TABLE jobtrail.events DISABLE TRIGGER events_notify_appended")
    follower = follower_of(store, db_dsn, Recorder(), idle_poll=0.3)
    async with running(follower):
        await asyncio.wait_for(follower.leading.wait(), 10)
        await asyncio.sleep(0.2)
        (position,) = await store.append("notes-1", [Noted(n=1)])
        await eventually(lambda: _at(seen, position), within=5)
    assert await positions(seen) == [position]


async def test_a_follower_whose_lock_connection_is_killed_leads_again_and_repeats_nothing(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool
) -> None:
    follower = follower_of(store, db_dsn, Recorder())
    async with running(follower):
        first = await store.append("notes-1", [Noted(n=i) for i in range(3)])
        await eventually(lambda: _at(seen, first[-1]))
        await seen.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND classid = 72440125 AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )  # this test's leader only: pg_locks lists every database's locks
        later = await store.append("notes-2", [Noted(n=i) for i in range(3)])
        await eventually(lambda: _at(seen, later[-1]))
    assert await positions(seen) == first + later


async def test_two_elected_followers_never_both_handle(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool
) -> None:
    followers = [follower_of(store, db_dsn, Recorder()) for _ in range(2)]
    async with running(followers[0]), running(followers[1]):
        written: list[int] = []
        for n in range(20):
            written += await store.append(f"notes-{n}", [Noted(n=n)])
        await eventually(lambda: _at(seen, written[-1]))
        assert sum(f.leading.is_set() for f in followers) == 1
    assert await positions(seen) == written


class Counting(Recorder):
    """A recorder that also counts the batches it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    async def handle(
        self, batch: Sequence[jobstore.RecordedEvent], commit: jobstore.follower.Commit
    ) -> None:
        self.batches += 1
        await super().handle(batch, commit)


async def test_a_lingering_follower_reads_a_trickle_in_few_batches_and_misses_nothing(
    store: jobstore.EventStore, seen: asyncpg.Pool, db_dsn: str
) -> None:
    """With ``linger``, appends arriving one by one are read at most once per linger."""
    linger = 0.3
    handler = Counting()
    # idle_poll far beyond the test: only notifications (and the linger) wake it
    follower = follower_of(store, db_dsn, handler, linger=linger, idle_poll=60, batch_size=100)
    async with running(follower):
        await follower.leading.wait()
        loop = asyncio.get_running_loop()
        began = loop.time()
        written = [p for i in range(20) for p in await store.append(f"n{i}", [Noted(n=i)])]
        await eventually(lambda: _has(seen, written))
        elapsed = loop.time() - began
    assert await positions(seen) == written
    # one read per notification would be ~20 batches; lingering: one per linger at most
    assert handler.batches <= elapsed / linger + 2, (handler.batches, elapsed)


async def _has(pool: asyncpg.Pool, written: list[int]) -> bool:
    return await positions(pool) == written
