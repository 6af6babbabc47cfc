"""The event store against a real PostgreSQL: append, read, versions, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

import jobstore
from jobstore import job_events
from tests.events import Noted


async def test_append_returns_positions_and_reads_back_in_order(
    store: jobstore.EventStore,
) -> None:
    positions = await store.append("s-1", [Noted(n=1), Noted(n=2)], jobstore.NO_STREAM)
    more = await store.append("s-1", [Noted(n=3)], 2, metadata={"by": "test"})

    assert positions == sorted(positions) and len(positions) == 2
    assert more[0] > positions[-1]
    events = await store.read_stream("s-1")
    assert [(e.version, e.event) for e in events] == [
        (1, Noted(n=1)),
        (2, Noted(n=2)),
        (3, Noted(n=3)),
    ]
    assert events[2].metadata == {"by": "test"}
    assert [e.version for e in await store.read_stream("s-1", from_version=2)] == [2, 3]
    assert await store.last_position() == more[0]
    assert await store.stream_version("s-1") == 3


async def test_append_to_many_streams_in_one_call_is_one_transaction(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    conn = await asyncpg.connect(db_dsn)
    notes: list[str] = []
    await conn.add_listener("jobtrail_events", lambda *args: notes.append(args[3]))
    try:
        result = await store.append_streams(
            [
                jobstore.StreamAppend(f"s-{i}", [Noted(n=j) for j in range(5)], "no_stream")
                for i in range(20)
            ]
        )
        await asyncio.sleep(0.2)  # notifications arrive asynchronously
    finally:
        await conn.close()

    assert [len(p) for p in result] == [5] * 20
    flat = [p for ps in result for p in ps]
    assert flat == sorted(flat)
    assert len(await store.read_all(0, 1000)) == 100
    assert len(notes) == 1, "one notification per transaction, not per event"


async def test_version_mismatch_names_stream_and_writes_nothing(
    store: jobstore.EventStore,
) -> None:
    await store.append("a", [Noted()], "no_stream")
    await store.append("b", [Noted(), Noted()], "no_stream")

    with pytest.raises(jobstore.ConcurrencyError) as caught:
        await store.append_streams(
            [
                jobstore.StreamAppend("a", [Noted(n=9)], 1),
                jobstore.StreamAppend("b", [Noted(n=9)], 1),  # b is at 2
            ]
        )
    assert caught.value.stream_id == "b"
    assert caught.value.actual == 2
    assert "'b'" in str(caught.value) and "expected 1" in str(caught.value)
    assert await store.stream_version("a") == 1, "the whole call writes nothing"

    with pytest.raises(jobstore.ConcurrencyError, match="no stream yet"):
        await store.append("a", [Noted()], jobstore.NO_STREAM)
    await store.append("a", [Noted()], jobstore.ANY)
    assert await store.stream_version("a") == 2


async def test_two_appenders_with_same_expected_version_exactly_one_wins(
    store: jobstore.EventStore,
) -> None:
    for round_ in range(20):
        stream = f"race-{round_}"
        await store.append(stream, [Noted()], "no_stream")
        results = await asyncio.gather(
            store.append(stream, [Noted(n=1)], 1),
            store.append(stream, [Noted(n=2)], 1),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, list)]
        losses = [r for r in results if isinstance(r, jobstore.ConcurrencyError)]
        assert (len(wins), len(losses)) == (1, 1), results
        assert await store.stream_version(stream) == 2


@pytest.mark.parametrize(
    ("stream_id", "events", "message"),
    [
        ("", [Noted()], "non-empty"),
        ("x" * 201, [Noted()], "limit is 200"),
        ("nul\x00id", [Noted()], "NUL"),
        ("s", [Noted(text="a\x00b")], "NUL character"),
        ("s", [Noted(extra={"v": float("nan")})], "finite"),
        ("s", [Noted(extra={"v": float("inf")})], "finite"),
        ("s", [Noted(extra={"k": object()})], "cannot be stored as JSON"),
        ("s", [Noted(extra={"big": 2**70})], "cannot be stored as JSON"),
    ],
)
async def test_bad_input_is_a_clear_error_and_writes_nothing(
    store: jobstore.EventStore, stream_id: str, events: list[jobstore.Event], message: str
) -> None:
    with pytest.raises(jobstore.InvalidEventError, match=message):
        await store.append(stream_id, events)
    assert await store.last_position() == 0


async def test_bad_expected_version_is_rejected(store: jobstore.EventStore) -> None:
    with pytest.raises(jobstore.InvalidEventError, match="expected_version"):
        await store.append("s", [Noted()], -1)
    with pytest.raises(jobstore.InvalidEventError, match="expected_version"):
        await store.append("s", [Noted()], "latest")  # type: ignore[arg-type]


async def test_bad_metadata_is_rejected_and_writes_nothing(store: jobstore.EventStore) -> None:
    with pytest.raises(jobstore.InvalidEventError, match="NUL"):
        await store.append("s", [Noted()], metadata={"who": "\x00"})
    assert await store.last_position() == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE jobtrail.events SET data = '{}'",
        "DELETE FROM jobtrail.events",
        "TRUNCATE jobtrail.events",
    ],
)
async def test_events_table_is_append_only(
    store: jobstore.EventStore, db_dsn: str, statement: str
) -> None:
    await store.append("s", [Noted(n=1)])
    conn = await asyncpg.connect(db_dsn)
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()
    assert [e.event for e in await store.read_stream("s")] == [Noted(n=1)]


async def test_unknown_event_type_read_back_is_an_error_naming_it(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)"
            " VALUES ('s', 1, 'mystery.happened', 1, '{}')"
        )
    finally:
        await conn.close()
    with pytest.raises(jobstore.UnknownEventTypeError, match=r"mystery\.happened"):
        await store.read_stream("s")


async def _insert_raw(dsn: str, event_type: str, schema_version: int, data: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)"
            " VALUES ('job-1', 1, $1, $2, $3::json)",
            event_type,
            schema_version,
            data,
        )
    finally:
        await conn.close()


async def test_old_schema_version_is_upcast_on_read(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    await _insert_raw(
        db_dsn, "job.completed", 1, '{"dispatch": 1, "attempt": 2, "duration_ms": 1500}'
    )
    (recorded,) = await store.read_stream("job-1")
    assert recorded.event == job_events.JobCompleted(dispatch=1, attempt=2, duration_seconds=1.5)


async def test_newer_schema_version_than_known_is_a_clear_error(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    await _insert_raw(db_dsn, "job.completed", 9, "{}")
    with pytest.raises(jobstore.EventStoreError, match="newer than this program knows"):
        await store.read_stream("job-1")


async def test_stored_event_that_fails_its_schema_is_a_clear_error(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    await _insert_raw(db_dsn, "job.cancelled", 1, '{"dispatch": "first"}')
    with pytest.raises(jobstore.EventStoreError, match="does not match its schema"):
        await store.read_stream("job-1")


async def test_read_all_pages_by_position(store: jobstore.EventStore) -> None:
    await store.append("s", [Noted(n=i) for i in range(7)])
    first = await store.read_all(0, 3)
    second = await store.read_all(first[-1].position, 3)
    third = await store.read_all(second[-1].position, 3)
    assert [e.event.n for e in first + second + third] == list(range(7))  # type: ignore[attr-defined]
    with pytest.raises(jobstore.EventStoreError, match="limit"):
        await store.read_all(0, 0)


async def test_unreachable_database_is_a_jobstore_error() -> None:
    with pytest.raises(jobstore.DatabaseUnavailableError, match="cannot connect"):
        await jobstore.create_pool("postgresql://nobody@127.0.0.1:1/none", min_size=1)


async def test_concurrent_appends_conflict_only_for_the_stream_that_conflicts(
    store: jobstore.EventStore,
) -> None:
    """Concurrent appends are committed together; one stale writer fails alone."""
    await store.append("stale", [Noted(), Noted()], "no_stream")
    results = await asyncio.gather(
        *(store.append(f"fresh-{i}", [Noted(n=i)], "no_stream") for i in range(30)),
        store.append("stale", [Noted(n=99)], 1),
        return_exceptions=True,
    )
    *fresh, stale = results
    assert all(isinstance(r, list) and len(r) == 1 for r in fresh), fresh
    assert isinstance(stale, jobstore.ConcurrencyError)
    assert (stale.stream_id, stale.actual) == ("stale", 2)
    assert await store.stream_version("stale") == 2
    positions = sorted(p for r in fresh for p in r)  # type: ignore[union-attr]
    assert len(set(positions)) == 30


async def test_concurrent_appends_to_one_stream_keep_every_event_in_order(
    store: jobstore.EventStore,
) -> None:
    await asyncio.gather(*(store.append("one", [Noted(n=i)]) for i in range(25)))
    events = await store.read_stream("one")
    assert [e.version for e in events] == list(range(1, 26))
    assert sorted(e.event.n for e in events) == list(range(25))  # type: ignore[attr-defined]
    assert [e.position for e in events] == sorted(e.position for e in events)


async def test_the_append_functions_are_never_planned_again_per_call(pool: asyncpg.Pool) -> None:
    """Their statement runs on its generic plan (sql/0038): re-planned per call it cost
    ~0.9 ms of every append once a session's first appends were small."""
    rows = await pool.fetch(
        "SELECT p.oid::regprocedure::text AS name, p.proconfig FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'jobtrail' AND p.proname IN ('append_events', 'append_events_each') "
        "AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql') "
        "AND p.pronargs >= 8"
    )
    assert len(rows) == 2, rows
    for row in rows:
        assert "plan_cache_mode=force_generic_plan" in (row["proconfig"] or []), row["name"]


async def test_a_transaction_for_the_callers_statements_commits_announces_and_translates(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """``store.transaction``: appends made on its connection commit together with the
    caller's statements and are announced; a failure names what was not done, nothing
    committed; a connection lost mid-way is DatabaseUnavailableError."""
    listener = await jobstore.database.connect(db_dsn)
    heard = asyncio.Event()
    await listener.add_listener(jobstore.store.NOTIFY_CHANNEL, lambda *_: heard.set())
    try:
        async with store.transaction("nothing to say") as conn:
            await store.append("tx-1", [Noted(n=1)], jobstore.NO_STREAM, connection=conn)
        await asyncio.wait_for(heard.wait(), 10)
    finally:
        await listener.close()

    async def append_then(
        stream: str, trouble: Callable[[asyncpg.Connection], Awaitable[Any]]
    ) -> None:
        async with store.transaction("the thing was not done") as conn:
            await store.append(stream, [Noted(n=2)], jobstore.NO_STREAM, connection=conn)
            await trouble(conn)

    async def lose_connection(conn: asyncpg.Connection) -> None:
        await pool.execute(
            "SELECT pg_terminate_backend($1)", await conn.fetchval("SELECT pg_backend_pid()")
        )
        await conn.execute("SELECT 1")

    with pytest.raises(jobstore.EventStoreError, match="the thing was not done: "):
        await append_then("tx-2", lambda c: c.execute("SELECT no_such_column FROM jobtrail.events"))
    with pytest.raises(jobstore.DatabaseUnavailableError, match="the thing was not done"):
        await append_then("tx-3", lose_connection)
    assert [await store.stream_version(s) for s in ("tx-1", "tx-2", "tx-3")] == [1, 0, 0]
