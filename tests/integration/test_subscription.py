"""Subscriptions yield what is in the log, then wake on NOTIFY for what comes next."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

import jobstore
from jobstore.follower import Tail
from tests.events import Noted


async def test_subscription_yields_backlog_then_new_events(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    await store.append("s", [Noted(n=i) for i in range(3)])
    received: list[int] = []

    async def follow() -> None:
        # idle_poll is long: only the notification can wake the subscriber in time.
        async with jobstore.Subscription(store, db_dsn, 0, batch_size=2, idle_poll=60) as sub:
            async for recorded in sub:
                received.append(recorded.event.n)  # type: ignore[attr-defined]
                if len(received) == 6:
                    return

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    await store.append("t", [Noted(n=i) for i in range(3, 6)])
    await asyncio.wait_for(following, timeout=10)
    assert received == [0, 1, 2, 3, 4, 5]


async def test_subscription_starts_after_the_given_position(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    positions = await store.append("s", [Noted(n=i) for i in range(4)])

    async def first() -> jobstore.RecordedEvent:
        async with jobstore.Subscription(store, db_dsn, positions[1]) as sub:
            async for recorded in sub:
                return recorded
        raise AssertionError("subscription ended")

    recorded = await asyncio.wait_for(first(), timeout=10)
    assert recorded.position == positions[2]


async def test_a_connection_lost_before_listen_does_not_end_the_subscription(
    store: jobstore.EventStore, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server restart can drop the new connection between connect and LISTEN: the
    subscription waits and listens again instead of ending with the driver's error."""
    original = Tail.listen
    lost: list[int] = []

    async def listen(self: Tail, conn: asyncpg.Connection) -> None:
        if len(lost) < 2:  # the next two LISTENs lose their connection
            lost.append(1)
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
        await original(self, conn)

    await store.append("s", [Noted(n=0)])
    received: list[int] = []

    async def follow() -> None:
        async with jobstore.Subscription(store, db_dsn, 0, idle_poll=0.1) as sub:
            async for recorded in sub:
                received.append(recorded.event.n)  # type: ignore[attr-defined]
                if len(received) == 2:
                    return

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # it has read the backlog and listens
    monkeypatch.setattr(Tail, "listen", listen)
    subscriber = await store.pool.fetchval(
        "SELECT pid FROM pg_stat_activity"
        " WHERE query ILIKE 'LISTEN%' AND datname = current_database()"
    )
    assert subscriber is not None, "the subscription listens on a connection of its own"
    await store.pool.execute("SELECT pg_terminate_backend($1)", subscriber)
    await asyncio.sleep(0.5)  # it notices, and its next LISTENs are lost
    await store.append("t", [Noted(n=1)])
    await asyncio.wait_for(following, timeout=15)
    assert received == [0, 1]
    assert len(lost) == 2, "the lost LISTENs were tried again"
