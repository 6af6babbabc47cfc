"""Rotating the audit key: old anchors stay verifiable with JOBTRAIL_AUDIT_PREVIOUS_KEYS, the
first anchor under the new key carries a hand-over the old key signed, and a key change
without one (a superuser's own "rotation") is reported as forged."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

import jobstore
from jobstore import audit, audit_verify
from tests.events import Noted
from tests.projection_support import completed, dispatched, new_job_id, started

OLD = audit.AuditKey(b"old-audit-key-0123456789abcdef")
NEW = audit.AuditKey(b"new-audit-key-0123456789abcdef", previous=(OLD,))
NEW_ALONE = audit.AuditKey(NEW.secret)
EVIL = audit.AuditKey(b"a-superusers-own-key-0123456789")


async def two_jobs(store: jobstore.EventStore) -> list[str]:
    streams = []
    for _ in range(2):
        job_id = new_job_id()
        await store.append(f"job-{job_id}", [dispatched(job_id), started(), completed()])
        streams.append(f"job-{job_id}")
    return streams


async def anchor_with(key: audit.AuditKey, pool: asyncpg.Pool, db_dsn: str) -> list[audit.Anchor]:
    return await audit.Anchorer(pool, db_dsn, key).anchor_through()


async def rotated(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> tuple[list[str], list[audit.Anchor], list[audit.Anchor]]:
    """Anchors under OLD, then more events anchored under NEW (OLD listed as previous)."""
    streams = await two_jobs(store)
    old = await anchor_with(OLD, pool, db_dsn)
    await store.append(streams[0], [Noted(n=1)])
    new = await anchor_with(NEW, pool, db_dsn)
    assert old and new
    return streams, old, new


async def insert_anchor(db_dsn: str, anchor: audit.Anchor) -> None:
    """Insert an anchor as a database superuser would (inserting is not even guarded)."""
    cursor = anchor.cursor()
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(
            "INSERT INTO jobtrail.audit_anchors (seq, cursor_xid, cursor_position, events,"
            " body, digest, key_id, signature) VALUES ($1, $2::xid8, $3, 1, $4, $5, $6, $7)",
            anchor.seq,
            cursor.transaction,
            cursor.position,
            anchor.body,
            anchor.digest,
            anchor.key_id,
            anchor.signature,
        )
    finally:
        await conn.close()


def next_anchor(
    after: audit.Anchor, signer: audit.AuditKey, handover: tuple[str, bytes] | None = None
) -> audit.Anchor:
    """An anchor following ``after``, signed by ``signer``, with the hand-over given."""
    made = audit.make_anchor(
        signer, after.seq + 1, after.digest, after.cursor(), 1, [], datetime.now(UTC)
    )
    if handover is None:
        return made
    body = orjson.loads(made.body)
    body["handover"] = {"from": handover[0], "signature": handover[1].hex()}
    text = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    digest = hashlib.sha256(text.encode()).digest()
    return audit.Anchor(made.seq, text, digest, signer.key_id, signer.sign(digest))


async def test_after_a_rotation_old_anchors_verify_with_the_previous_key(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    _, old, new = await rotated(store, pool, db_dsn)

    report = await audit_verify.verify(pool, NEW)

    assert report.intact, report.breaks
    assert report.anchors_checked == report.last_anchor == new[-1].seq
    assert {a.key_id for a in old} == {OLD.key_id}
    assert {a.key_id for a in new} == {NEW.key_id}


async def test_the_first_anchor_under_the_new_key_carries_the_old_keys_hand_over(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    _, old, new = await rotated(store, pool, db_dsn)
    await store.append(f"job-{new_job_id()}", [dispatched(new_job_id())])
    later = await anchor_with(NEW, pool, db_dsn)

    assert new[0].handover() == (OLD.key_id, OLD.sign_handover(old[-1].digest, NEW.key_id))
    assert [a.handover() for a in new[1:] + later] == [None] * len(new[1:] + later)
    assert audit.handover_problem(old[-1], new[0], NEW) is None
    assert audit.handover_problem(old[-1], new[0], audit.AuditKey(NEW.secret, (EVIL,))) is not None


async def test_a_key_change_without_the_old_keys_hand_over_is_reported_as_forged(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """A superuser appends an anchor under a key of their own, claiming a rotation."""
    await two_jobs(store)
    last = (await anchor_with(OLD, pool, db_dsn))[-1]
    await insert_anchor(db_dsn, next_anchor(last, EVIL))

    report = await audit_verify.verify(pool, OLD)

    found = report.first
    assert found is not None and found.anchor == last.seq + 1
    assert "without a hand-over signed by the old key: a forged rotation" in found.problem
    assert not found.unchecked and not report.unchecked_only


async def test_a_hand_over_the_old_key_did_not_sign_is_forged_even_with_the_new_key_set(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """Even an operator talked into setting the superuser's key (the old one as previous)
    is told: the "hand-over" was signed by the new key itself, not the old one."""
    await two_jobs(store)
    last = (await anchor_with(OLD, pool, db_dsn))[-1]
    fake = EVIL.sign_handover(last.digest, EVIL.key_id)
    await insert_anchor(db_dsn, next_anchor(last, EVIL, (OLD.key_id, fake)))

    report = await audit_verify.verify(pool, audit.AuditKey(EVIL.secret, (OLD,)))

    found = report.first
    assert found is not None and found.anchor == last.seq + 1
    assert "with a hand-over the old key did not sign: forged" in found.problem
    assert not report.intact and not report.unchecked_only


async def test_with_the_old_key_dropped_its_anchors_are_unchecked_but_held_by_the_new_ones(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams, old, new = await rotated(store, pool, db_dsn)

    report = await audit_verify.verify(pool, NEW_ALONE)

    assert not report.intact and report.unchecked_only
    assert report.unchecked_anchors == [a.seq for a in old] + [new[0].seq]
    by_anchor = {b.anchor: b.problem for b in report.breaks}
    assert f"is signed by key id {OLD.key_id}, which is not among" in by_anchor[old[0].seq]
    assert f"held by the chain of digests up to anchor #{new[0].seq}" in by_anchor[old[0].seq]
    assert "hand-over cannot be checked without the old key" in by_anchor[new[0].seq]

    # The old anchors' heads still count: a stream they alone anchored, cut back, is caught.
    await _superuser_delete_last_event(db_dsn, streams[1])
    cut = await audit_verify.verify(pool, NEW_ALONE)
    assert not cut.unchecked_only
    assert any(b.stream_id == streams[1] and "is gone" in b.problem for b in cut.breaks)


async def _superuser_delete_last_event(db_dsn: str, stream_id: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "DELETE FROM jobtrail.events WHERE stream_id = $1 AND version = 3", stream_id
        )
    finally:
        await conn.close()


async def test_the_anchorer_will_not_change_key_without_the_old_one_as_previous(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    await two_jobs(store)
    old = await anchor_with(OLD, pool, db_dsn)
    await store.append(f"job-{new_job_id()}", [dispatched(new_job_id())])

    with pytest.raises(audit.AuditError) as raised:
        await audit.Anchorer(pool, db_dsn, NEW_ALONE).anchor_once()

    assert str(raised.value) == (
        f"the last anchor #{old[-1].seq} is signed by key id {OLD.key_id}, which is neither "
        f"JOBTRAIL_AUDIT_KEY (key id {NEW.key_id}) nor in JOBTRAIL_AUDIT_PREVIOUS_KEYS: add "
        "the key it was signed with to JOBTRAIL_AUDIT_PREVIOUS_KEYS to hand over to the new "
        "key, or set JOBTRAIL_AUDIT_KEY back to it"
    )
    assert [a.seq for a in await audit.anchors(pool)] == [a.seq for a in old]


async def test_a_key_is_handed_over_forward_only(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """With the old key leaked, an anchor it signs after the new key took over is neither
    extended by the anchorer nor passed by verify."""
    _, _, new = await rotated(store, pool, db_dsn)
    await insert_anchor(db_dsn, next_anchor(new[-1], OLD))

    with pytest.raises(audit.AuditError, match="a key is handed over forward only"):
        await audit.Anchorer(pool, db_dsn, NEW).anchor_once()
    report = await audit_verify.verify(pool, NEW)
    assert report.first is not None and report.first.anchor == new[-1].seq + 1
    assert "without a hand-over signed by the old key" in report.first.problem


async def test_an_export_across_a_rotation_verifies(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    await rotated(store, pool, db_dsn)
    lines = [orjson.dumps(a.to_json()) for a in await audit.anchors(pool)]

    report = await audit_verify.verify(pool, NEW, exported=audit.load_export(lines))

    assert report.intact, report.breaks


async def test_two_rotations_verify_with_both_previous_keys(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    streams, _, _ = await rotated(store, pool, db_dsn)
    newest = audit.AuditKey(b"newest-audit-key-0123456789abcdef", previous=(NEW_ALONE, OLD))
    await store.append(streams[1], [Noted(n=2)])
    last = await anchor_with(newest, pool, db_dsn)

    handover = last[0].handover()
    assert handover is not None and handover[0] == NEW.key_id
    assert (await audit_verify.verify(pool, newest)).intact
    without_old = await audit_verify.verify(pool, audit.AuditKey(newest.secret, (NEW_ALONE,)))
    assert without_old.unchecked_only and without_old.unchecked_anchors[0] == 1
