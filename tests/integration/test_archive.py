"""Retention: whole finished job streams move to the archive, recorded, nothing else changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import jobstore
from jobstore import job_events
from jobstore.dispatcher import Dispatcher

WELCOME = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}
FUTURE = datetime.now(UTC) + timedelta(days=1)


async def _finished(dispatcher: Dispatcher, status: str) -> str:
    job_id = await dispatcher.enqueue("send-email", WELCOME)
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": status, "error": "x"})
    return job_id


async def test_finished_streams_move_to_the_archive_with_a_record(
    store: jobstore.EventStore,
) -> None:
    dispatcher = Dispatcher(store)
    done = await _finished(dispatcher, "completed")
    failed = await _finished(dispatcher, "failed")
    running = await dispatcher.enqueue("send-email", WELCOME)
    history = await store.read_stream(f"job-{done}")

    moved = await store.archive_streams(
        [f"job-{done}", f"job-{failed}", f"job-{running}", "schedule-x"], FUTURE, 30
    )

    assert sorted(moved) == sorted([f"job-{done}", f"job-{failed}"])
    assert await store.read_stream(f"job-{done}") == []
    assert await store.read_archived_stream(f"job-{done}") == history
    assert len(await store.read_stream(f"job-{running}")) == 1, "unfinished jobs stay"
    record = (await store.read_all(0, 1000))[-1]
    assert isinstance(record.event, job_events.StreamsArchived)
    assert sorted(record.event.job_ids) == sorted([done, failed])
    assert record.event.retention_days == 30


async def test_streams_finished_after_the_cutoff_stay(store: jobstore.EventStore) -> None:
    dispatcher = Dispatcher(store)
    done = await _finished(dispatcher, "completed")
    past = datetime.now(UTC) - timedelta(days=1)
    assert await store.archive_streams([f"job-{done}"], past, 1) == []
    assert len(await store.read_stream(f"job-{done}")) == 3
    assert (await store.read_all(0, 100))[-1].stream_id == f"job-{done}", "nothing recorded"


async def test_other_updates_and_deletes_still_fail_after_archiving(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    dispatcher = Dispatcher(store)
    await store.archive_streams([f"job-{await _finished(dispatcher, 'completed')}"], FUTURE, 1)
    conn = await asyncpg.connect(db_dsn)
    try:
        for statement in [  # the guard runs once per statement (sql/0037), before any row
            "DELETE FROM jobtrail.events",
            "DELETE FROM jobtrail.events WHERE false",
            "UPDATE jobtrail.events SET data = '{}'",
        ]:
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_archiving_and_purging_write_their_wal_compressed(
    store: jobstore.EventStore,
) -> None:
    """sql/0044: the two functions that move and delete old rows (mostly full-page images)
    run with wal_compression, set on them alone (the app role archiving through them:
    test_app_role.py)."""
    rows = await store.pool.fetch(
        "SELECT p.proname, p.proconfig FROM pg_proc p"
        " WHERE p.pronamespace = 'jobtrail'::regnamespace"
        " AND p.proname IN ('archive_streams', 'purge_archive')"
    )
    methods = await store.pool.fetchval(
        "SELECT enumvals FROM pg_settings WHERE name = 'wal_compression'"
    )
    expected = "wal_compression=lz4" if "lz4" in methods else "wal_compression=pglz"
    assert {r["proname"]: expected in r["proconfig"] for r in rows} == {
        "archive_streams": True,
        "purge_archive": True,
    }
