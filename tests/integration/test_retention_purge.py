"""The purge cannot lose data: exported, synced and read back intact before any delete."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

import jobstore
from jobstore import job_events
from tests.integration.test_retention import catch_up, load_old_jobs
from workers import retention

LATER = timedelta(days=40)  # the clock of the purge: archived rows are 40 days old by then


async def archive_old_jobs(store: jobstore.EventStore, pool: asyncpg.Pool, dsn: str) -> None:
    await load_old_jobs(pool)
    await catch_up(pool, dsn)
    settings = jobstore.Settings(database_url=dsn)
    assert (await retention.Retention(store, dsn, settings).archive()) == 18


async def archived_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every archived row as the export writes it (all columns, as stored)."""
    rows = await pool.fetch(
        "SELECT row_to_json(a)::text AS line FROM jobtrail.events_archive a ORDER BY position"
    )
    return [orjson.loads(row["line"]) for row in rows]


def purger(
    store: jobstore.EventStore, dsn: str, folder: Path | None, days: int | None, **kw: Any
) -> retention.Retention:
    settings = jobstore.Settings(
        database_url=dsn, archive_days=days, archive_export_dir=folder, retention_days=0
    )
    later = datetime.now(UTC) + LATER
    return retention.Retention(store, dsn, settings, clock=lambda: later, **kw)


def file_facts(path: Path) -> tuple[str, int]:
    """The sha256 and size of the file as it is on disk now."""
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def files_in(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def purge_records(store: jobstore.EventStore) -> list[job_events.ArchivePurged]:
    records = await store.read_all(0, 100_000)
    return [r.event for r in records if isinstance(r.event, job_events.ArchivePurged)]


async def test_purge_exports_verifies_deletes_and_records_and_the_file_restores_it_all(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    await archive_old_jobs(store, pool, db_dsn)
    before = await archived_rows(pool)

    report = await purger(store, db_dsn, tmp_path, 30).run_once()

    assert report.errors == [] and report.purged_events == len(before) == 60
    assert await archived_rows(pool) == []
    (record,) = await purge_records(store)
    path = Path(record.file)
    assert path.parent == tmp_path and path.name.endswith(".jsonl.gz")
    digest, size = file_facts(path)
    assert record.sha256 == digest
    assert (record.events, record.streams, record.file_bytes) == (60, 18, size)
    positions = [row["position"] for row in before]
    assert (record.first_position, record.last_position) == (min(positions), max(positions))
    assert retention.read_export(path) == before, "every archived row, exactly as stored"
    runs = await pool.fetch("SELECT purged_events FROM jobtrail.retention_runs")
    assert [r["purged_events"] for r in runs] == [60]
    status = await retention.status(
        pool, jobstore.Settings(database_url=db_dsn, archive_days=30), datetime.now(UTC) + LATER
    )
    assert (status.purged_events, status.archived_events) == (60, 0)
    assert status.last_purge_at is not None


async def test_nothing_is_purged_without_both_settings(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    await archive_old_jobs(store, pool, db_dsn)
    before = await archived_rows(pool)

    assert await purger(store, db_dsn, tmp_path, None).purge() == 0  # folder, no window
    assert await purger(store, db_dsn, None, 30).purge() == 0  # window, no folder

    assert await archived_rows(pool) == before
    assert files_in(tmp_path) == []
    assert await purge_records(store) == []


async def test_nothing_younger_than_the_archive_window_is_purged(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    await archive_old_jobs(store, pool, db_dsn)
    before = await archived_rows(pool)
    assert await purger(store, db_dsn, tmp_path, 41).purge() == 0  # archived 40 days "ago"
    assert await archived_rows(pool) == before


class CorruptingExporter(retention.ArchiveExporter):
    """A disk that gives back other bytes than it was given (one bit flipped)."""

    def read_back(self, path: Path) -> bytes:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        return bytes(data)


async def test_an_export_that_fails_its_read_back_digest_deletes_nothing(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    await archive_old_jobs(store, pool, db_dsn)
    before = await archived_rows(pool)

    report = await purger(store, db_dsn, tmp_path, 30, exporter=CorruptingExporter()).run_once()

    assert report.purged_events == 0
    assert len(report.errors) == 1 and "sha256" in report.errors[0]
    assert await archived_rows(pool) == before
    assert await purge_records(store) == []
    error = await pool.fetchval("SELECT error FROM jobtrail.retention_runs")
    assert "nothing was purged" in error


async def test_the_database_purges_only_exactly_the_rows_exported(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """A purge naming fewer positions than its streams hold (a stale export) deletes nothing."""
    await archive_old_jobs(store, pool, db_dsn)
    before = await archived_rows(pool)
    streams = sorted({row["stream_id"] for row in before})
    positions = [row["position"] for row in before if row["stream_id"] in streams][:-1]
    later = datetime.now(UTC) + LATER
    with pytest.raises(asyncpg.PostgresError, match="exactly the exported events"):
        await pool.fetchval(
            "SELECT jobtrail.purge_archive($1, $2, $3, $4, $5, $6, $7)",
            streams,
            positions,
            "0" * 64,
            "/nowhere.jsonl.gz",
            10,
            later,
            30,
        )
    with pytest.raises(asyncpg.PostgresError, match="exactly the exported events"):
        await pool.fetchval(  # archived less than the window ago
            "SELECT jobtrail.purge_archive($1, $2, $3, $4, $5, $6, $7)",
            streams,
            [row["position"] for row in before],
            "0" * 64,
            "/nowhere.jsonl.gz",
            10,
            datetime.now(UTC) - timedelta(days=1),
            30,
        )
    assert await archived_rows(pool) == before


def test_unsafe_purge_settings_refuse_with_one_line_naming_what_to_set(tmp_path: Path) -> None:
    def problem(**values: Any) -> str | None:
        return retention.configuration_problem(jobstore.Settings(**values))

    assert problem() is None
    assert problem(archive_export_dir=tmp_path / "archive") is None  # nothing is purged
    no_folder = problem(archive_days=90)
    assert no_folder is not None and "JOBTRAIL_ARCHIVE_EXPORT_DIR" in no_folder
    exports = tmp_path / "exports"
    inside = problem(
        archive_days=90,
        archive_export_dir=exports / "archive",
        export_dir=exports,
        export_keep_days=7,
    )
    assert inside is not None and "a folder of its own" in inside
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = problem(archive_days=90, archive_export_dir=blocker)
    assert unwritable is not None and "not a writable folder" in unwritable
    for line in (no_folder, inside, unwritable):
        assert "\n" not in line and line.startswith("refusing to start")
    assert problem(archive_days=90, archive_export_dir=tmp_path / "ok") is None


def _touch(path: Path, age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x" * 10)
    when = time.time() - age_days * 86400
    os.utime(path, (when, when))
    return path


async def test_old_export_and_report_files_are_removed_by_their_own_windows_and_recorded(
    store: jobstore.EventStore, db_dsn: str, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    old_export = _touch(exports / "user-7" / "export-a-1.jsonl", 10)
    new_export = _touch(exports / "organization-2" / "export-b-1.jsonl", 2)
    old_report = _touch(exports / "reports" / "report-c-1.csv", 40)
    mid_report = _touch(exports / "reports" / "report-d-1.json", 10)
    stranger = _touch(exports / "user-7" / "notes.txt", 100)
    settings = jobstore.Settings(
        database_url=db_dsn,
        export_dir=exports,
        export_keep_days=7,
        report_keep_days=30,
        retention_days=0,
    )

    report = await retention.Retention(store, db_dsn, settings).run_once()

    assert report.removed_files == 2 and report.errors == []
    assert not old_export.exists() and not old_report.exists()
    assert new_export.exists() and mid_report.exists() and stranger.exists()
    records = [r.event for r in await store.read_all(0, 1000)]
    removed = [e for e in records if isinstance(e, job_events.ExportFilesRemoved)]
    assert sorted((e.kind, e.files, e.keep_days) for e in removed) == [
        ("export-data", ["user-7/export-a-1.jsonl"], 7),
        ("generate-report", ["reports/report-c-1.csv"], 30),
    ]


async def test_without_windows_no_export_file_is_removed(
    store: jobstore.EventStore, db_dsn: str, tmp_path: Path
) -> None:
    old = _touch(tmp_path / "user-1" / "export-x-1.jsonl", 1000)
    settings = jobstore.Settings(database_url=db_dsn, export_dir=tmp_path)
    assert await retention.Retention(store, db_dsn, settings).remove_old_files() == 0
    assert old.exists()


async def test_file_removal_never_follows_a_symbolic_link(
    store: jobstore.EventStore, db_dsn: str, tmp_path: Path
) -> None:
    precious = _touch(tmp_path / "elsewhere" / "precious.jsonl", 400)
    link = tmp_path / "exports" / "user-1" / "export-z-1.jsonl"
    link.parent.mkdir(parents=True)
    link.symlink_to(precious)
    settings = jobstore.Settings(
        database_url=db_dsn, export_dir=tmp_path / "exports", export_keep_days=1
    )
    assert await retention.Retention(store, db_dsn, settings).remove_old_files() == 0
    assert link.is_symlink() and precious.exists()
