"""``jobtrail audit anchor|export|verify`` in a subprocess, against a real database tampered
with as its superuser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import asyncpg
import pytest

import jobstore
from tests.cli_support import jobtrail, one_line_error
from tests.projection_support import completed, dispatched, new_job_id, started

KEY = "cli-test-audit-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBTRAIL_AUDIT_KEY", KEY)


async def two_jobs(store: jobstore.EventStore) -> list[str]:
    streams = []
    for _ in range(2):
        job_id = new_job_id()
        await store.append(f"job-{job_id}", [dispatched(job_id), started(), completed()])
        streams.append(f"job-{job_id}")
    return streams


async def test_verify_says_intact_then_names_the_first_broken_place(
    db_dsn: str, store: jobstore.EventStore, tmp_path: Path
) -> None:
    streams = await two_jobs(store)
    before = await jobtrail(db_dsn, "audit", "verify")
    assert before.code == 0, before.err
    assert before.out.startswith("intact: 6 event(s), 0 archived, 0 anchor(s); 6 event(s) since")
    assert "(6 of them not chained yet)" in before.out, before.out
    anchored = await jobtrail(db_dsn, "audit", "anchor")
    assert anchored.code == 0, anchored.err
    assert re.fullmatch(r"anchor\(s\) #1–#(\d+): 6 event\(s\)\n", anchored.out), anchored.out
    last = re.findall(r"#(\d+):", anchored.out)[0]

    intact = await jobtrail(db_dsn, "audit", "verify")
    assert intact.code == 0, intact.err
    assert intact.out.startswith(
        f"intact: 6 event(s), 0 archived, {last} anchor(s); last anchor #{last}"
    )
    assert "verified 6 of 6 events" in intact.err, "progress, off a terminal"

    conn = await asyncpg.connect(db_dsn)
    try:
        position = await conn.fetchval(
            "SELECT position FROM jobtrail.events WHERE stream_id = $1 AND version = 2",
            streams[1],
        )
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("ALTER TABLE jobtrail.events DROP CONSTRAINT events_xid_is_writer")
        await conn.execute(
            'UPDATE jobtrail.events SET metadata = \'{"actor": "someone else"}\''
            " WHERE position = $1",
            position,
        )
    finally:
        await conn.close()

    broken = await jobtrail(db_dsn, "audit", "verify")
    assert broken.code == 3, broken
    first = broken.out.splitlines()[0]
    assert first.startswith(f"broken at position {position}, stream '{streams[1]}', version 2:")
    assert "1 broken place(s) in all" in broken.out

    as_json = await jobtrail(db_dsn, "audit", "verify", "--json")
    assert as_json.code == 3
    report = json.loads(as_json.out)
    assert report["intact"] is False
    assert report["first_break"]["position"] == position
    assert report["first_break"]["stream_id"] == streams[1]
    assert report["first_break"]["version"] == 2

    after = await jobtrail(db_dsn, "audit", "verify", "--from", str(position + 1))
    assert after.code == 0, after.out


async def test_anchors_cut_back_are_caught_against_the_export(
    db_dsn: str, store: jobstore.EventStore, tmp_path: Path
) -> None:
    streams = await two_jobs(store)
    await jobtrail(db_dsn, "audit", "anchor")
    await store.append(streams[0], [completed()])
    await jobtrail(db_dsn, "audit", "anchor")
    exported = tmp_path / "anchors.jsonl"
    result = await jobtrail(db_dsn, "audit", "export", "--out", str(exported))
    assert result.code == 0, result.err
    seqs = [json.loads(line)["seq"] for line in exported.read_text().splitlines()]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2

    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("DELETE FROM jobtrail.audit_anchors WHERE seq = $1", seqs[-1])
    finally:
        await conn.close()

    checked = await jobtrail(db_dsn, "audit", "verify", "--anchors", str(exported))
    assert checked.code == 3, checked
    assert checked.out.startswith(f"broken at anchor #{seqs[-1]}: is in the export but gone")


async def test_a_bad_anchors_file_is_one_line_and_exit_2(db_dsn: str, tmp_path: Path) -> None:
    bad = tmp_path / "anchors.jsonl"
    bad.write_text('{"seq": 1}\n')
    result = await jobtrail(db_dsn, "audit", "verify", "--anchors", str(bad))
    one_line_error(result, 2, str(bad), "line 1", "needs seq, body, digest, key_id, signature")
    missing = await jobtrail(db_dsn, "audit", "verify", "--anchors", str(tmp_path / "none"))
    one_line_error(missing, 2, "cannot read the anchors file")


async def test_rotating_the_key_keeps_the_anchors_and_their_export_verifiable(
    db_dsn: str, store: jobstore.EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anchor under one key; a new key alone is refused in one line saying what to set; with
    the old key as previous the chain is handed over and verifies (the export too); with the
    old key dropped verify names the anchors it cannot check and exits 4."""
    streams = await two_jobs(store)
    assert (await jobtrail(db_dsn, "audit", "anchor")).code == 0
    await store.append(streams[0], [completed()])
    new_key = "cli-test-new-audit-key-0123456789abcdef"
    monkeypatch.setenv("JOBTRAIL_AUDIT_KEY", new_key)

    refused = await jobtrail(db_dsn, "audit", "anchor")
    one_line_error(refused, 1, "is neither JOBTRAIL_AUDIT_KEY", "JOBTRAIL_AUDIT_PREVIOUS_KEYS")

    monkeypatch.setenv("JOBTRAIL_AUDIT_PREVIOUS_KEYS", f"some-older-key-0123456789, {KEY}")
    handed_over = await jobtrail(db_dsn, "audit", "anchor")
    assert handed_over.code == 0, handed_over.err
    exported = tmp_path / "anchors.jsonl"
    assert (await jobtrail(db_dsn, "audit", "export", "--out", str(exported))).code == 0
    verified = await jobtrail(db_dsn, "audit", "verify", "--anchors", str(exported))
    assert verified.code == 0, verified.out
    assert verified.out.startswith("intact: 7 event(s)")

    monkeypatch.delenv("JOBTRAIL_AUDIT_PREVIOUS_KEYS")
    unchecked = await jobtrail(db_dsn, "audit", "verify", "--anchors", str(exported))
    assert unchecked.code == 4, unchecked
    lines = unchecked.out.splitlines()
    assert re.fullmatch(r"not verified: anchor\(s\) #1(, #\d+)* could not be checked", lines[0])
    assert "which is not among the keys set here" in lines[1]
    assert "add it to JOBTRAIL_AUDIT_PREVIOUS_KEYS" in unchecked.out
    as_json = json.loads((await jobtrail(db_dsn, "audit", "verify", "--json")).out)
    assert as_json["intact"] is False and as_json["unchecked_anchors"][0] == 1
