"""The tamper-evident log: edits, removals and insertions made as the database superuser are
each reported at their place; archiving keeps the log verifiable; anchors cannot be forged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

import jobstore
from jobstore import audit, audit_verify
from tests.events import Noted
from tests.projection_support import completed, dispatched, new_job_id, started

KEY = audit.AuditKey(b"test-audit-key-0123456789abcdef")
UNGUARDED = """
SET session_replication_role = replica;
ALTER TABLE jobtrail.events DROP CONSTRAINT IF EXISTS events_xid_is_writer;
"""


async def superuser(db_dsn: str, sql: str, *args: Any) -> None:
    """Run ``sql`` as the superuser with the log's triggers off (the append-only one too)
    and without the check that a row keeps its writer's transaction id."""
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(UNGUARDED)
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def three_jobs(store: jobstore.EventStore) -> list[str]:
    """Three job streams of three events each, interleaved in the log."""
    jobs = [new_job_id() for _ in range(3)]
    for events in ([dispatched(j)] for j in jobs):
        await store.append(f"job-{events[0].job_id}", events)
    for job_id in jobs:
        await store.append(f"job-{job_id}", [started()])
    for job_id in jobs:
        await store.append(f"job-{job_id}", [completed()])
    return [f"job-{j}" for j in jobs]


async def place(pool: asyncpg.Pool, stream_id: str, version: int) -> int:
    position = await pool.fetchval(
        "SELECT position FROM jobtrail.events WHERE stream_id = $1 AND version = $2",
        stream_id,
        version,
    )
    assert position is not None
    return int(position)


async def anchored(pool: asyncpg.Pool, db_dsn: str) -> list[audit.Anchor]:
    return await audit.Anchorer(pool, db_dsn, KEY).anchor_through()


class _Anchored:
    """Equal to any anchor number: which anchor holds a head depends on timing."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and other >= 1

    def __hash__(self) -> int:
        return 0


ANCHORED: Any = _Anchored()


def first(report: audit_verify.Report) -> tuple[Any, ...]:
    found = report.first
    assert found is not None, "verification found nothing broken"
    return (found.stream_id, found.version, found.position, found.anchor)


async def test_an_untouched_log_verifies_intact_and_counts_what_is_not_anchored_yet(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    anchors = await anchored(pool, db_dsn)  # more than one if a transaction held some back
    assert sum(a.content()["events"] for a in anchors) == 9
    heads = {h.stream_id: h.version for a in anchors for h in a.heads()}
    assert heads == dict.fromkeys(streams, 3)
    await store.append(streams[0], [Noted(n=1)])

    report = await audit_verify.verify(pool, KEY)

    assert report.intact, report.breaks
    assert (report.events_checked, report.unanchored_events) == (10, 1)
    assert report.unchained_events == 1, "appended after the last chaining: no hash yet"
    assert report.anchors_checked == report.last_anchor == anchors[-1].seq


async def test_an_edited_event_is_reported_at_its_place(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    target = await place(pool, streams[1], 2)
    await superuser(
        db_dsn,
        "UPDATE jobtrail.events SET data = '{\"edited\": true}' WHERE position = $1",
        target,
    )

    report = await audit_verify.verify(pool, KEY)

    assert first(report) == (streams[1], 2, target, None)
    assert "does not match its hash" in report.breaks[0].problem


async def test_an_edit_with_recomputed_hashes_is_caught_by_the_signed_anchor(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """A superuser who knows the chain's layout rewrites a stream consistently: the chain
    alone is intact again, but the head no longer has the hash the anchor signed."""
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    await superuser(
        db_dsn,
        "UPDATE jobtrail.events SET data = '{\"edited\": true}'"
        " WHERE stream_id = $1 AND version = 2",
        streams[0],
    )
    for version in (2, 3):  # recompute the rest of the stream's chain, as an attacker would
        await superuser(
            db_dsn,
            """
            UPDATE jobtrail.event_hashes h SET hash = jobtrail.event_hash(
                   ph.hash, e.position, e.xid, e.stream_id, e.version, e.event_type,
                   e.schema_version, e.data, e.metadata, e.recorded_at)
              FROM jobtrail.events e, jobtrail.events p, jobtrail.event_hashes ph
             WHERE h.position = e.position AND e.stream_id = $1 AND e.version = $2
               AND p.stream_id = e.stream_id AND p.version = e.version - 1
               AND ph.position = p.position
            """,
            streams[0],
            version,
        )

    report = await audit_verify.verify(pool, KEY)

    head = await place(pool, streams[0], 3)
    assert first(report) == (streams[0], 3, head, ANCHORED)
    assert "rewritten at or before version 3" in report.breaks[0].problem
    assert len(report.breaks) == 1, "the chain itself was made consistent again"


async def test_a_deleted_event_is_reported_as_missing_where_the_chain_breaks(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    deleted = await place(pool, streams[2], 2)
    follower = await place(pool, streams[2], 3)
    await superuser(db_dsn, "DELETE FROM jobtrail.events WHERE position = $1", deleted)

    report = await audit_verify.verify(pool, KEY)

    assert first(report) == (streams[2], 2, follower, None)
    assert "is missing (removed)" in report.breaks[0].problem


async def test_the_last_event_of_an_anchored_stream_cut_off_is_reported(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    last = await place(pool, streams[1], 3)
    await superuser(db_dsn, "DELETE FROM jobtrail.events WHERE position = $1", last)

    report = await audit_verify.verify(pool, KEY)

    assert first(report) == (streams[1], 3, last, ANCHORED)
    assert "removed or cut back" in report.breaks[0].problem


async def test_a_whole_removed_stream_is_reported(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    head = await place(pool, streams[0], 3)
    await superuser(db_dsn, "DELETE FROM jobtrail.events WHERE stream_id = $1", streams[0])

    report = await audit_verify.verify(pool, KEY)

    assert first(report) == (streams[0], 3, head, ANCHORED)
    assert len(report.breaks) == 1
    assert "gone from the log and the archive" in report.breaks[0].problem


async def test_an_inserted_event_with_a_made_up_hash_is_reported_at_its_place(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    await superuser(
        db_dsn,
        """
        WITH forged AS (
            INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data)
            VALUES ($1, 4, 'job.completed', 1, '{"forged": true}') RETURNING position)
        INSERT INTO jobtrail.event_hashes SELECT position, sha256('anything') FROM forged
        """,
        streams[2],
    )
    forged = await place(pool, streams[2], 4)

    report = await audit_verify.verify(pool, KEY)

    assert first(report) == (streams[2], 4, forged, None)


async def test_an_event_inserted_behind_an_anchor_with_a_correct_hash_is_reported(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """The chain cannot tell a well-made forgery from an append; the anchors can, when the
    forged event claims a place in the log they already covered."""
    await three_jobs(store)
    await anchored(pool, db_dsn)
    await superuser(  # a correct hash, stored with it; only the writer's xid is forged
        db_dsn,
        """
        WITH forged AS (
            INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version,
                                         data, xid)
            VALUES ('job-forged', 1, 'job.completed', 1, '{}', '1') RETURNING *)
        INSERT INTO jobtrail.event_hashes
        SELECT position, jobtrail.event_hash(NULL, position, xid, stream_id, version,
                                             event_type, schema_version, data, metadata,
                                             recorded_at)
          FROM forged
        """,
    )
    forged = await place(pool, "job-forged", 1)

    report = await audit_verify.verify(pool, KEY)

    assert first(report) == ("job-forged", 1, forged, None)
    assert "not in any anchor" in report.breaks[0].problem
    assert len(report.breaks) == 1, "its hash is right: only its place gives it away"


async def test_an_event_inserted_behind_the_chain_without_a_hash_is_reported(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """The chain is computed after appends: a row slipped in behind its cursor (a forged old
    transaction id) is never chained, and verification says so."""
    await three_jobs(store)
    await audit.chain_pending(pool)  # chained, not anchored: the chain's cursor alone
    await superuser(
        db_dsn,
        """INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version,
                                        data, xid)
           VALUES ('job-forged', 1, 'job.completed', 1, '{}', '1')""",
    )
    forged = await place(pool, "job-forged", 1)

    report = await audit_verify.verify(pool, KEY)

    assert first(report) == ("job-forged", 1, forged, None)
    assert "has no hash although the chain has passed" in report.breaks[0].problem
    assert report.unchained_events == 0


async def test_a_removed_hash_is_reported_at_its_event(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    target = await place(pool, streams[0], 2)
    await superuser(db_dsn, "DELETE FROM jobtrail.event_hashes WHERE position = $1", target)

    report = await audit_verify.verify(pool, KEY)

    assert first(report) == (streams[0], 2, target, None)
    assert "has no hash" in report.breaks[0].problem


async def test_archived_streams_still_verify_and_a_purge_without_record_is_reported(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    future = datetime.now(UTC) + timedelta(days=1)
    moved = await store.archive_streams(streams[:2], future, 30)
    assert sorted(moved) == sorted(streams[:2])
    record = (await store.read_all(0, 100))[-1]
    heads = record.metadata[audit.ARCHIVE_HEADS]
    assert [h[0] for h in heads] == sorted(streams[:2])
    await anchored(pool, db_dsn)

    report = await audit_verify.verify(pool, KEY)
    assert report.intact, report.breaks
    assert report.archived_checked == 6

    archived_head = await pool.fetchval(
        "SELECT position FROM jobtrail.events_archive WHERE stream_id = $1 AND version = 3",
        streams[0],
    )
    await superuser(db_dsn, "DELETE FROM jobtrail.events_archive WHERE stream_id = $1", streams[0])
    report = await audit_verify.verify(pool, KEY)
    assert first(report) == (streams[0], 3, archived_head, ANCHORED)
    assert "without a purge record" in report.breaks[0].problem


async def test_a_changed_anchor_is_reported(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    await store.append(streams[0], [Noted(n=1)])
    (last,) = (await anchored(pool, db_dsn))[-1:]
    await superuser(
        db_dsn, "UPDATE jobtrail.audit_anchors SET body = body || ' ' WHERE seq = $1", last.seq
    )

    report = await audit_verify.verify(pool, KEY)

    found = report.first
    assert found is not None and (found.anchor, found.stream_id) == (last.seq, None)
    assert "digest" in found.problem


async def test_anchors_made_with_another_key_do_not_verify(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    await three_jobs(store)
    await anchored(pool, db_dsn)
    other = audit.AuditKey(b"someone-elses-key-0123456789")

    report = await audit_verify.verify(pool, other)

    assert report.first is not None and report.first.anchor == 1
    assert f"is signed by key id {KEY.key_id}, which is not among" in report.first.problem
    assert "JOBTRAIL_AUDIT_PREVIOUS_KEYS" in report.first.problem
    assert not report.intact and report.first.unchecked
    with pytest.raises(audit.AuditError, match=f"signed by key id {KEY.key_id}, which is neither"):
        await audit.Anchorer(pool, db_dsn, other).anchor_once()


async def test_anchors_cut_back_are_caught_only_against_an_export(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    await store.append(streams[0], [Noted(n=1)])
    (last,) = (await anchored(pool, db_dsn))[-1:]
    exported = audit.load_export(orjson.dumps(a.to_json()) for a in await audit.anchors(pool))
    assert [a.seq for a in exported] == list(range(1, last.seq + 1))
    await superuser(db_dsn, "DELETE FROM jobtrail.audit_anchors WHERE seq = $1", last.seq)

    assert (await audit_verify.verify(pool, KEY)).intact, "without the export, a cut is invisible"
    report = await audit_verify.verify(pool, KEY, exported=exported)
    assert report.first is not None and report.first.anchor == last.seq
    assert "gone from the database" in report.first.problem


async def test_from_position_checks_the_log_from_there_on(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams = await three_jobs(store)
    await anchored(pool, db_dsn)
    early = await place(pool, streams[0], 1)
    later = await place(pool, streams[0], 3)
    await superuser(
        db_dsn, "UPDATE jobtrail.events SET metadata = '{\"x\": 1}' WHERE position = $1", early
    )
    seen: list[tuple[int, int]] = []

    report = await audit_verify.verify(
        pool, KEY, from_position=later, progress=lambda d, t: seen.append((d, t))
    )

    assert report.intact, report.breaks
    assert report.events_checked == 3, "the three jobs' last events"
    assert seen and seen[-1][0] == seen[-1][1]
    assert not (await audit_verify.verify(pool, KEY)).intact


async def test_concurrent_appends_to_shared_streams_chain_without_a_global_lock(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """Group-committed appends from many tasks, several to the same streams, and multi-event
    appends: every stream's chain is exact, with anchors taken while they run."""
    streams = [f"job-{new_job_id()}" for _ in range(5)]
    anchorer = audit.Anchorer(pool, db_dsn, KEY, audit.AnchorConfig(max_events=50))

    async def writer(w: int) -> None:
        for i in range(30):
            await store.append(streams[(w + i) % 5], [Noted(n=i), Noted(n=-i)])

    async def anchoring() -> None:
        for _ in range(10):
            await audit.chain_pending(pool, 50)
            await anchorer.anchor_pending()
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(w) for w in range(8)), anchoring())
    await anchorer.anchor_through()

    report = await audit_verify.verify(pool, KEY)
    assert report.intact, report.breaks
    assert report.events_checked == 8 * 30 * 2
    assert report.unanchored_events == report.unchained_events == 0


async def test_anchors_and_hashes_are_append_only_short_of_disabling_the_triggers(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    await three_jobs(store)
    await anchored(pool, db_dsn)
    for sql in (
        "UPDATE jobtrail.audit_anchors SET key_id = 'mine'",
        "DELETE FROM jobtrail.audit_anchors",
        "TRUNCATE jobtrail.audit_anchors",
    ):
        with pytest.raises(asyncpg.PostgresError, match="audit_anchors is append-only"):
            await pool.execute(sql)
    for sql in (
        "UPDATE jobtrail.event_hashes SET hash = sha256('mine')",
        "DELETE FROM jobtrail.event_hashes",
        "TRUNCATE jobtrail.event_hashes",
    ):
        with pytest.raises(asyncpg.PostgresError, match="event_hashes is append-only"):
            await pool.execute(sql)
    assert (await audit_verify.verify(pool, KEY)).intact


async def test_the_lag_says_what_is_not_chained_and_not_anchored_yet(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """What /metrics and the dashboard show (jobtrail_audit_*): counts after each cursor,
    when the oldest unanchored event was written, the last anchor's time; each count stops
    at its limit."""
    assert await audit.lag(pool) == audit.AuditLag(0, 0, None, None)
    await three_jobs(store)
    first_written = await pool.fetchval(
        "SELECT recorded_at FROM jobtrail.events ORDER BY xid, position LIMIT 1"
    )
    assert await audit.lag(pool) == audit.AuditLag(9, 9, None, first_written)
    assert await audit.lag(pool, limit=4) == audit.AuditLag(4, 4, None, first_written)
    await audit.chain_pending(pool)
    assert await audit.lag(pool) == audit.AuditLag(0, 9, None, first_written)
    (anchor,) = await anchored(pool, db_dsn)
    assert (await audit.lag(pool)).waited(datetime.now(UTC)) == timedelta(0)
    await store.append(f"job-{new_job_id()}", [Noted(n=1)])
    found = await audit.lag(pool)
    assert (found.unchained, found.unanchored) == (1, 1)
    made = await pool.fetchval("SELECT recorded_at FROM jobtrail.audit_anchors WHERE seq = $1", 1)
    assert anchor.seq == 1 and found.last_anchor_at == made
    assert found.oldest_unanchored_at is not None and found.oldest_unanchored_at > made
    later = found.oldest_unanchored_at + timedelta(minutes=20)
    assert found.waited(later) == timedelta(minutes=20)
