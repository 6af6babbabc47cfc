"""The chain's hashes, computed off the append path by jobtrail.chain_events (sql/0045), are
the chain's exact bytes: recomputed in Python from version 1 of each stream, for batches of
many events and streams, chaining batches that split a stream, conflicts in a group commit,
streams continued after archiving, transactions that commit late, two chainers at once, and
writers that would like a hash of their own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import jobstore
from jobstore import audit, audit_verify, role
from tests import pg
from tests.events import Noted
from tests.integration.test_app_role import as_user, drop_role
from tests.projection_support import completed, dispatched, new_job_id, started

KEY = audit.AuditKey(b"test-audit-key-0123456789abcdef")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
STORED = """
SELECT stream_id, version, position, xid::text AS xid, event_type, schema_version,
       data::text AS data, metadata::text AS metadata, recorded_at, hash
  FROM (SELECT e.stream_id, e.version, e.position, e.xid, e.event_type, e.schema_version,
               e.data, e.metadata, e.recorded_at, h.hash
          FROM jobtrail.events e LEFT JOIN jobtrail.event_hashes h USING (position)
        UNION ALL
        SELECT stream_id, version, position, xid, event_type, schema_version, data, metadata,
               recorded_at, hash FROM jobtrail.events_archive) e
 ORDER BY stream_id, version
"""
UNCHAINED = (
    "SELECT count(*) FROM jobtrail.events e"
    " WHERE NOT EXISTS (SELECT 1 FROM jobtrail.event_hashes h WHERE h.position = e.position)"
)


async def recompute(pool: asyncpg.Pool) -> dict[tuple[str, int], bool]:
    """Every stored event (log and archive), and whether its hash is the one Python computes
    for it chained to the hash Python computed for the version before (not the stored one)."""
    matches: dict[tuple[str, int], bool] = {}
    previous: bytes | None = None
    for row in await pool.fetch(STORED):
        version = row["version"]
        if version == 1:
            previous = None
        else:
            assert (row["stream_id"], version - 1) in matches, f"a gap before {dict(row)}"
        expected = audit.event_hash(
            previous,
            row["position"],
            int(row["xid"]),
            row["stream_id"],
            version,
            row["event_type"],
            row["schema_version"],
            row["data"],
            row["metadata"],
            (row["recorded_at"] - EPOCH) // MICROSECOND,
        )
        matches[(row["stream_id"], version)] = (
            row["hash"] is not None and bytes(row["hash"]) == expected
        )
        previous = expected
    return matches


async def assert_chained(pool: asyncpg.Pool, expected_events: int, batch: int = 3) -> None:
    """After chaining (in batches of ``batch``: streams split across them), every event has
    Python's hash, and ``jobtrail audit verify`` says intact."""
    await audit.chain_pending(pool, batch)
    matches = await recompute(pool)
    assert len(matches) == expected_events
    assert [place for place, ok in matches.items() if not ok] == []
    report = await audit_verify.verify(pool, KEY)
    assert report.intact, report.breaks
    assert report.unchained_events == 0


async def test_a_batch_of_many_events_of_one_stream_is_chained_event_by_event(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    stream = f"job-{new_job_id()}"
    await store.append(stream, [Noted(n=i) for i in range(7)], jobstore.NO_STREAM)
    await store.append(stream, [Noted(n=i) for i in range(7, 12)], 7)

    await assert_chained(pool, 12)


async def test_a_batch_of_several_streams_interleaved_is_chained_per_stream(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """One append_events call whose events alternate between streams, two of which already
    have events: each event chains to its own stream's previous one."""
    a, b, c = (f"job-{new_job_id()}" for _ in range(3))
    await store.append_streams(
        [
            jobstore.StreamAppend(a, [Noted(n=1), Noted(n=2)], jobstore.NO_STREAM),
            jobstore.StreamAppend(b, [Noted(n=3)], jobstore.NO_STREAM),
        ]
    )
    streams = [a, c, b, a, c, a, b, c]
    await pool.fetch(
        "SELECT * FROM jobtrail.append_events($1::text[], $2::integer[], $3::text[],"
        " $4::text[], $5::smallint[], $6::text[]::json[], $7::text[]::json[], true)",
        [a, b, c],
        [2, 1, 0],
        streams,
        ["test.noted"] * len(streams),
        [1] * len(streams),
        [f'{{"n": {i}, "text": "größe ✓ {i}"}}' for i in range(len(streams))],
        ['{"trace": "t"}'] * len(streams),
    )

    assert await store.stream_version(a) == 5
    await assert_chained(pool, 11)


async def test_a_group_commit_with_a_conflict_chains_the_streams_it_writes(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """append_events_each: the stream at the wrong version gets nothing, the others are
    written and chained as if it had not been in the batch."""
    a, b, c = (f"job-{new_job_id()}" for _ in range(3))
    await store.append(a, [Noted(n=0)], jobstore.NO_STREAM)
    await store.append(b, [Noted(n=0), Noted(n=1)], jobstore.NO_STREAM)

    outcomes = await store.append_each(
        [
            jobstore.StreamAppend(a, [Noted(n=1), Noted(n=2)], 1),
            jobstore.StreamAppend(b, [Noted(n=9)], 1),  # b is at version 2
            jobstore.StreamAppend(c, [Noted(n=1), Noted(n=2), Noted(n=3)], jobstore.NO_STREAM),
        ]
    )

    assert isinstance(outcomes[1], jobstore.ConcurrencyError)
    assert [len(o) for o in (outcomes[0], outcomes[2]) if isinstance(o, list)] == [2, 3]
    assert await store.stream_version(b) == 2
    await assert_chained(pool, 1 + 2 + 2 + 3)


async def test_a_stream_continued_after_archiving_chains_to_its_archived_head(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """The appends refuse an archived stream (sql/0035); an event inserted all the same
    (the superuser's direct INSERT) still chains to the head in the archive, and the
    archive's own log.streams_archived record is chained too."""
    job = new_job_id()
    stream = f"job-{job}"
    for event in (dispatched(job), started(), completed()):
        await store.append(stream, [event])
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    archive = "SELECT * FROM jobtrail.archive_streams($1::text[], $2, 30)"
    assert await pool.fetch(archive, [stream], tomorrow) == [], "not chained: stays"
    assert await store.archive_streams([stream], tomorrow, 30), "chains first, then moves"
    await pool.execute(
        "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)"
        " VALUES ($1, 4, 'test.noted', 1, '{\"n\": 4}')",
        stream,
    )

    await audit.chain_pending(pool)
    matches = await recompute(pool)

    assert matches[(stream, 4)] is True
    assert len(matches) == 5  # three archived, the continuation, the archive's record
    assert all(matches.values())


@pytest.fixture
async def writer_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool logged in as an application role (may INSERT into the log, nothing more)."""
    name = f"jt_app_{uuid.uuid4().hex[:12]}"
    password = "correct horse battery staple"
    try:
        assert await role.ensure_app_role(db_dsn, name, password) is True
        pool = await jobstore.create_pool(as_user(db_dsn, name, password), max_size=2)
        try:
            assert not await pool.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            )
            yield pool
        finally:
            await pool.close()
    finally:
        await drop_role(db_dsn, name)


async def test_appends_store_no_hash_the_chainer_adds_them(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """The append path computes nothing: events wait unchained (verification counts them,
    reports nothing) until chain_events runs, which chains each exactly once."""
    stream = f"job-{new_job_id()}"
    await store.append(stream, [Noted(n=i) for i in range(4)], jobstore.NO_STREAM)
    assert await pool.fetchval(UNCHAINED) == 4
    report = await audit_verify.verify(pool, KEY)
    assert report.intact and report.unchained_events == 4

    assert await audit.chain_pending(pool, 3) == 4
    assert await audit.chain_pending(pool, 3) == 0, "nothing is chained twice"
    assert await pool.fetchval(UNCHAINED) == 0
    await assert_chained(pool, 4)


async def test_events_held_back_by_a_running_transaction_are_chained_after_it_commits(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """The chain reads below the followers' horizon: a transaction that took its id early and
    commits late cannot leave its events behind the chain's cursor, unchained for good."""
    early, later = (f"job-{new_job_id()}" for _ in range(2))
    conn = await asyncpg.connect(db_dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.fetchval("SELECT pg_current_xact_id()")  # its id, older than what follows
        await jobstore.EventStore(pool).append(later, [Noted(n=1)], jobstore.NO_STREAM)
        await conn.fetch(
            "SELECT * FROM jobtrail.append_events($1::text[], $2::integer[], $3::text[],"
            " $4::text[], $5::smallint[], $6::text[]::json[], $7::text[]::json[], true)",
            [early], [0], [early], ["test.noted"], [1], ['{"n": 0}'], ["{}"],
        )  # fmt: skip
        assert await audit.chain_pending(pool) == 0, "both wait behind the open transaction"
        await transaction.commit()
    finally:
        await conn.close()

    assert await audit.chain_pending(pool) == 2
    await assert_chained(pool, 2)


async def test_two_chainers_at_once_chain_every_event_exactly_once(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    """Two hosts chaining while appends run (an election changing hands): the cursor row's
    lock makes them take turns; no event is chained twice or skipped."""
    streams = [f"job-{new_job_id()}" for _ in range(4)]
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for i in range(25):
            await store.append(streams[(w + i) % 4], [Noted(n=i)])

    async def chainer() -> int:
        chained = 0
        while not done.is_set():
            chained += await audit.chain_pending(pool, 7)
            await asyncio.sleep(0)
        return chained + await audit.chain_pending(pool, 7)

    chainers = [asyncio.ensure_future(chainer()) for _ in range(2)]
    await asyncio.gather(*(writer(w) for w in range(6)))
    done.set()
    counts = await asyncio.gather(*chainers)

    assert sum(counts) == 6 * 25
    await assert_chained(pool, 6 * 25)


async def test_an_application_cannot_write_hashes_or_move_the_chain(
    store: jobstore.EventStore, pool: asyncpg.Pool, writer_pool: asyncpg.Pool
) -> None:
    """The application role appends (through both functions, now with its own rights), may
    run the chainer (hosts do) and read the chain, but cannot store a hash of its choosing
    or move the chain's cursor past events; its direct inserts are chained like any."""
    stream = f"job-{new_job_id()}"
    writer = jobstore.EventStore(writer_pool)
    await writer.append(stream, [Noted(n=0), Noted(n=1)], jobstore.NO_STREAM)
    await writer.append_each([jobstore.StreamAppend(stream, [Noted(n=2)], 2)])
    await writer_pool.execute(
        "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)"
        " VALUES ($1, 4, 'test.noted', 1, '{\"n\": 3}')",
        stream,
    )
    position = await pool.fetchval(
        "SELECT position FROM jobtrail.events WHERE stream_id = $1 AND version = 4", stream
    )
    for sql, args in (
        ("INSERT INTO jobtrail.event_hashes VALUES ($1, sha256('made up'))", (position,)),
        ("UPDATE jobtrail.chain_progress SET cursor_position = cursor_position + 100", ()),
        ("DELETE FROM jobtrail.event_hashes", ()),
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await writer_pool.execute(sql, *args)

    assert await audit.chain_pending(writer_pool) == 4
    assert await writer_pool.fetchval("SELECT count(*) FROM jobtrail.event_hashes") == 4
    await assert_chained(pool, 4)


async def test_the_callers_search_path_cannot_reach_into_the_chainer(
    store: jobstore.EventStore, pool: asyncpg.Pool, writer_pool: asyncpg.Pool
) -> None:
    """chain_events runs as the log's owner: functions the application role puts before
    pg_catalog in its search_path are not what it calls (its search_path is fixed), so they
    neither run with the owner's rights nor change a hash."""
    name = await writer_pool.fetchval("SELECT current_user")
    schema = f"{name}_own"
    await pool.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{name}"')
    stream = f"job-{new_job_id()}"
    await store.append(stream, [Noted(n=0), Noted(n=1)], jobstore.NO_STREAM)
    async with writer_pool.acquire() as conn, conn.transaction():
        await conn.execute(f"""
            CREATE FUNCTION "{schema}".sha256(bytea) RETURNS bytea
            LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'hijacked as %', current_user; END; $$;
            SET LOCAL search_path = "{schema}", pg_catalog;
        """)
        with pytest.raises(asyncpg.PostgresError, match="hijacked"):
            async with conn.transaction():
                await conn.fetchval("SELECT sha256('x'::bytea)")  # the trap is armed
        assert await conn.fetchval("SELECT jobtrail.chain_events(100)") == 2

    await assert_chained(pool, 2)


async def test_a_log_chained_before_0045_keeps_its_hashes_and_goes_on_chaining(
    empty_dsn: str, tmp_path: Path
) -> None:
    """Migrating a log whose events were hashed by the append functions (sql/0039) and by
    the row trigger moves every hash, unchanged, to event_hashes; the chain's cursor starts
    after them, and new events, also in the same streams, chain onto the old heads."""
    await jobstore.migrate(empty_dsn, pg.migrations_before(tmp_path, 45))
    pool = await jobstore.create_pool(empty_dsn, min_size=1, max_size=2)
    try:
        store = jobstore.EventStore(pool)
        streams = [f"job-{new_job_id()}" for _ in range(3)]
        for stream in streams:
            await store.append(stream, [Noted(n=0), Noted(n=1)], jobstore.NO_STREAM)
        await pool.execute(  # the row trigger's way in
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)"
            " VALUES ($1, 3, 'test.noted', 1, '{\"n\": 2}')",
            streams[0],
        )
        hashes = "SELECT position, hash FROM jobtrail.{}"
        old = {r["position"]: bytes(r["hash"]) for r in await pool.fetch(hashes.format("events"))}
        assert len(old) == 7 and all(old.values())

        await jobstore.migrate(empty_dsn)

        moved = await pool.fetch(hashes.format("event_hashes"))
        assert {r["position"]: bytes(r["hash"]) for r in moved} == old
        assert await audit.chain_pending(pool) == 0, "the cursor starts after the old events"
        for stream in streams[1:]:
            await store.append(stream, [Noted(n=2)], 2)
        await store.append(streams[0], [Noted(n=3)], 3)
        assert await audit.chain_pending(pool) == 3
        await assert_chained(pool, 10)
        await audit.Anchorer(pool, empty_dsn, KEY).anchor_through()
        assert (await audit_verify.verify(pool, KEY)).intact
    finally:
        await pool.close()
