"""No reader ever skips an event, even when transactions commit out of position order."""

from __future__ import annotations

import asyncio
import random

import asyncpg

import jobstore
from tests.events import Noted

WRITERS = 8
TRANSACTIONS_PER_WRITER = 25


async def _writer(pool: asyncpg.Pool, store: jobstore.EventStore, w: int) -> list[int]:
    rng = random.Random(w)
    positions: list[int] = []
    for t in range(TRANSACTIONS_PER_WRITER):
        async with pool.acquire() as conn, conn.transaction():
            # Pause at random before and after inserting, inside the transaction: a
            # position taken early and committed late is exactly what a tailing reader
            # could skip.
            await asyncio.sleep(rng.random() * 0.004)
            events = [Noted(n=w * 1000 + t, text=str(i)) for i in range(rng.randint(1, 3))]
            positions += await store.append(f"w{w}-{t % 5}", events, connection=conn)
            await asyncio.sleep(rng.random() * 0.004)
    return positions


async def test_tailing_reader_sees_every_event_once_in_position_order(
    pool: asyncpg.Pool, store: jobstore.EventStore
) -> None:
    seen: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        last = 0
        while True:
            finished = done.is_set()
            batch = await store.read_all(last, 50)
            seen.extend(e.position for e in batch)
            if batch:
                last = batch[-1].position
            elif finished:
                return
            else:
                await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    written = await asyncio.gather(*(_writer(pool, store, w) for w in range(WRITERS)))
    done.set()
    await reading

    all_positions = sorted(p for ps in written for p in ps)
    assert seen == sorted(seen), "the reader saw positions out of order"
    assert len(seen) == len(set(seen)), "the reader saw an event twice"
    assert seen == all_positions, "the reader skipped events"
