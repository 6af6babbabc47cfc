"""No reader ever skips an event, even when transactions commit out of position order.

Appends do not serialise (sql/0019): positions commit out of order, and only the reading
rule (transaction order, below the oldest running transaction) keeps followers whole.
"""

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
            # could skip.  Half the writers write something else first, as a caller's own
            # transaction does (EventStore.transaction): their transaction id is older than
            # positions others take meanwhile, so reading order and position order differ
            # for certain, not only when two appends interleave inside one statement.
            if w % 2:
                await conn.fetchval("SELECT pg_current_xact_id()")
            await asyncio.sleep(rng.random() * 0.004)
            events = [Noted(n=w * 1000 + t, text=str(i)) for i in range(rng.randint(1, 3))]
            positions += await store.append(f"w{w}-{t % 5}", events, connection=conn)
            await asyncio.sleep(rng.random() * 0.004)
    return positions


async def test_tailing_reader_sees_every_event_once_in_position_order(
    pool: asyncpg.Pool, store: jobstore.EventStore
) -> None:
    """A follower reading after its cursor while writers commit out of order misses nothing."""
    seen: list[jobstore.RecordedEvent] = []
    done = asyncio.Event()

    async def reader() -> None:
        cursor = jobstore.START
        while True:
            finished = done.is_set()
            page = await store.read_after(cursor, 50)
            seen.extend(page.events)
            cursor = page.last(cursor)
            if not page.events and finished and not page.held_back:
                return
            if not page.events:
                await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    written = await asyncio.gather(*(_writer(pool, store, w) for w in range(WRITERS)))
    done.set()
    await reading

    all_positions = sorted(p for ps in written for p in ps)
    cursors = [jobstore.Cursor.of(e) for e in seen]
    positions = [e.position for e in seen]
    assert cursors == sorted(cursors), "the reader saw events out of its reading order"
    assert len(positions) == len(set(positions)), "the reader saw an event twice"
    assert sorted(positions) == all_positions, "the reader skipped events"
    by_transaction: dict[int, list[int]] = {}
    by_stream: dict[str, list[int]] = {}
    for e in seen:
        by_transaction.setdefault(e.transaction, []).append(e.position)
        by_stream.setdefault(e.stream_id, []).append(e.version)
    assert all(ps == sorted(ps) for ps in by_transaction.values())
    assert all(vs == list(range(1, len(vs) + 1)) for vs in by_stream.values()), (
        "a stream's events were read out of version order"
    )
    assert positions != all_positions, "writers never committed out of order: nothing tested"


async def test_the_followers_read_never_scans_the_whole_log(
    pool: asyncpg.Pool, store: jobstore.EventStore
) -> None:
    """Every follower reads the log all the time: its read must probe indexes, not scan.

    The horizon is unknown when the statement is planned; an ``EXISTS (… xid >= horizon)``
    was planned as a sequential scan of the log (a cost growing with the log, per read)
    whenever the log had outgrown its statistics: a young or fast-growing log, as here.
    """
    from jobstore import query

    for chunk in range(10):  # a log big enough for the planner to prefer a scan
        await store.append_streams(
            [jobstore.StreamAppend(f"s{chunk}-{i}", [Noted(n=i, text="x")]) for i in range(2000)]
        )
    read_after = query.load("jobstore", "store.sql")["read_after"].rstrip().rstrip(";")
    async with pool.acquire() as conn:  # not analyzed: the planner guesses a third
        await conn.execute(f"PREPARE follow (xid8, bigint, integer, text[]) AS {read_after}")
        for cursor in ("0", "1000"):
            for types in ("NULL", "ARRAY['test.noted']"):  # every type, and a follower's
                statement = f"EXPLAIN EXECUTE follow ('{cursor}', 0, 50, {types})"
                plan = [r[0] for r in await conn.fetch(statement)]
                assert not [line for line in plan if "Seq Scan" in line], "\n".join(plan)
