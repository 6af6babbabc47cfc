"""Subscriptions yield what is in the log, then wake on NOTIFY for what comes next."""

from __future__ import annotations

import asyncio

import jobstore
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
