"""A follower of some event types writes its checkpoint lazily past pages of other types.

At a trickle of events it does not handle, it writes one checkpoint per
``checkpoint_every`` seconds, not one per page; once idle, the checkpoint reaches the head
within that time (the lag ``relay status`` and ``/metrics`` read stays right); a follower
that starts over from a checkpoint left behind re-reads only events of other types and
hands on nothing twice; the events it handles still move the checkpoint with them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

import jobstore
import projections
from tests.events import Noted

NOTED = frozenset({Noted.type_name})


class Aside(jobstore.Event, type_name="test.lazy_aside"):
    """An event of a type the follower under test does not handle."""

    n: int = 0


class NotedRecorder:
    """Records each ``test.noted`` it is handed in ``seen`` (a primary key: twice fails)."""

    handles = NOTED

    async def handle(
        self, batch: Sequence[jobstore.RecordedEvent], commit: jobstore.follower.Commit
    ) -> None:
        async with commit() as conn:
            await conn.executemany("INSERT INTO seen VALUES ($1)", [(r.position,) for r in batch])


@pytest.fixture
async def seen(pool: asyncpg.Pool) -> asyncpg.Pool:
    await pool.execute("CREATE TABLE public.seen (position bigint PRIMARY KEY)")
    return pool


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The positions of every checkpoint write (``checkpoint.advance``), in order."""
    written: list[int] = []
    advance = jobstore.checkpoint.advance

    async def counted(conn: Any, name: str, expected: Any, new: jobstore.Cursor) -> bool:
        written.append(new.position)
        return await advance(conn, name, expected, new)

    monkeypatch.setattr(jobstore.checkpoint, "advance", counted)
    return written


def follower_of(
    store: jobstore.EventStore, dsn: str, every: float, quiet: float = 60.0
) -> jobstore.Follower:
    config = jobstore.FollowerConfig(
        batch_size=10,
        idle_poll=5.0,
        leader_retry=0.05,
        checkpoint_every=every,
        checkpoint_quiet=quiet,
    )
    return jobstore.Follower(store, "noted", NotedRecorder(), dsn=dsn, config=config)


@contextlib.asynccontextmanager
async def running(follower: jobstore.Follower) -> AsyncIterator[None]:
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.leading.wait(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def positions(pool: asyncpg.Pool) -> list[int]:
    return [r[0] for r in await pool.fetch("SELECT position FROM seen ORDER BY position")]


async def lag(pool: asyncpg.Pool) -> int:
    """The follower's lag as ``relay status`` and ``/metrics`` compute it (the database's)."""
    (status,) = await projections.projection_status(pool, ["noted"])
    return int(status.lag)


async def eventually(check: Any, within: float = 10.0) -> float:
    """Poll ``check`` until true; the seconds it took (fails after ``within``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        assert loop.time() - start < within, "timed out"
        await asyncio.sleep(0.02)
    return loop.time() - start


async def test_a_trickle_of_other_types_writes_few_checkpoints_and_idle_lag_reaches_zero(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool, writes: list[int]
) -> None:
    follower = follower_of(store, db_dsn, every=0.6)  # never quiet long enough: a minute
    async with running(follower):
        (first,) = await store.append("s-1", [Noted(n=1)])
        await eventually(lambda: _positions_are(seen, [first]))
        await eventually(lambda: _lag_is(seen, 0))
        writes.clear()

        for i in range(20):  # each append wakes the follower: a page of other types
            await store.append(f"aside-{i}", [Aside(n=i)])
            await asyncio.sleep(0.015)
        assert len(writes) <= 1, f"a checkpoint per page of other types: {writes}"

        waited = await eventually(lambda: _lag_is(seen, 0), within=5)
        assert waited < 1.5, f"idle, the checkpoint reached the head only after {waited:.1f} s"
        assert (await jobstore.checkpoint.read(seen, "noted")) == await store.head()

        # The next event it handles moves the checkpoint from where it was written.
        await store.append("aside-x", [Aside(n=99)])
        (second,) = await store.append("s-1", [Noted(n=2)])
        await eventually(lambda: _positions_are(seen, [first, second]))
        assert writes[-1] == second
    assert await positions(seen) == [first, second]


async def test_once_the_log_is_quiet_the_checkpoint_is_written_at_once(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool, writes: list[int]
) -> None:
    """Not due for a minute, yet written as soon as the log has been quiet for a moment:
    at a steady trickle it waits, at the end of one it does not."""
    follower = follower_of(store, db_dsn, every=60, quiet=0.2)
    async with running(follower):
        (first,) = await store.append("s-1", [Noted(n=1)])
        await eventually(lambda: _positions_are(seen, [first]))
        writes.clear()
        for i in range(10):  # closer together than the quiet time: a trickle
            await store.append(f"aside-{i}", [Aside(n=i)])
            await asyncio.sleep(0.02)
        assert writes == [], "written during a trickle"
        waited = await eventually(lambda: _lag_is(seen, 0), within=5)
        assert 0.1 < waited < 1.0, f"written {waited:.2f} s after the trickle ended"
        assert len(writes) == 1


async def test_a_follower_starting_over_from_a_checkpoint_left_behind_hands_nothing_on_twice(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool
) -> None:
    """A crash (a cancel: nothing written on the way out) with the seen position ahead of
    the written checkpoint: the next follower re-reads the other types' events only."""
    follower = follower_of(store, db_dsn, every=60)
    async with running(follower):
        (first,) = await store.append("s-1", [Noted(n=1)])
        await eventually(lambda: _positions_are(seen, [first]))
        for i in range(5):
            await store.append(f"aside-{i}", [Aside(n=i)])
        await eventually(lambda: _seen_at(follower, store))
    behind = await jobstore.checkpoint.read(seen, "noted")
    assert behind.position == first, "written although not due"
    assert await lag(seen) == 5

    (second,) = await store.append("s-1", [Noted(n=2)])
    await store.append("aside-y", [Aside(n=7)])
    again = follower_of(store, db_dsn, every=60)
    assert await again.run_until_caught_up() == 1
    assert await positions(seen) == [first, second]
    assert await jobstore.checkpoint.read(seen, "noted") == await store.head()
    assert await lag(seen) == 0


async def test_catching_up_writes_the_checkpoint_at_the_head_of_other_types(
    store: jobstore.EventStore, db_dsn: str, seen: asyncpg.Pool, writes: list[int]
) -> None:
    """``run_until_caught_up`` (tools, ``catch_up``) ends with the checkpoint written, even
    when the last pages held none of its types."""
    (first,) = await store.append("s-1", [Noted(n=1)])
    for i in range(30):  # three pages of other types after the one with the Noted
        await store.append(f"aside-{i}", [Aside(n=i)])
    assert await follower_of(store, db_dsn, every=60).run_until_caught_up() == 1
    assert await positions(seen) == [first]
    assert await jobstore.checkpoint.read(seen, "noted") == await store.head()
    assert len(writes) == 2, f"one write for the Noted's page, one at the end: {writes}"


async def _positions_are(pool: asyncpg.Pool, expected: list[int]) -> bool:
    return await positions(pool) == expected


async def _lag_is(pool: asyncpg.Pool, expected: int) -> bool:
    return await lag(pool) == expected


async def _seen_at(follower: jobstore.Follower, store: jobstore.EventStore) -> bool:
    return follower.seen == await store.head()
