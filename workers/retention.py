"""Retention that runs by itself: archive old finished jobs, purge safely, drop old files.

``jobtrail serve`` runs :class:`Retention` as a background task of every host; one host at
a time holds the ``retention`` role (``jobstore.Election``) and runs the schedule, which
lives in the database (``jobtrail.retention_runs``), so it survives restarts and moves
with the role.  Each run:

1. **Archives** finished jobs whose end is older than ``JOBTRAIL_RETENTION_DAYS`` (default
   30; 0 turns it off), in batches of ``JOBTRAIL_ARCHIVE_BATCH_JOBS``, each its own short
   transaction (``jobtrail.archive_streams`` locks only the streams it moves, so appends
   to other streams never wait for it), paced to ``JOBTRAIL_ARCHIVE_WAL_MB_PER_S`` of WAL
   (:class:`Pace`).  Unfinished jobs are never archived, whatever their age.
2. **Purges** archived events older than ``JOBTRAIL_ARCHIVE_DAYS``, only when that and
   ``JOBTRAIL_ARCHIVE_EXPORT_DIR`` are both set: each batch is first written to an export
   file (gzip-compressed JSON Lines, one archived row a line, every column as stored),
   fsynced (file and folder), and read back; only when the bytes read back have the
   sha256 written, and decompress to exactly the lines exported, does
   ``jobtrail.purge_archive`` delete exactly those rows and record
   ``log.archive_purged`` (counts, position range, sha256, file) in the same transaction.
3. **Removes** export-data and generate-report files older than
   ``JOBTRAIL_EXPORT_KEEP_DAYS`` / ``JOBTRAIL_REPORT_KEEP_DAYS`` (unset: kept), recording
   ``log.export_files_removed``.

An archived job stays findable: its idempotency key returns it (``Enqueued.archived``) and
its history is in the archive; replaying it is refused (``JOB_ARCHIVED``): archived
history is read-only.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import socket
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import asyncpg
import structlog

import jobstore
import projections
from jobstore import EventStore, Settings, job_events, job_state, query
from workers.context import HostContext
from workers.handlers import export, report

log = structlog.get_logger("jobtrail.retention")
_Q = query.load("workers", "retention.sql")

VIEW: Final = "job_executions"
"""The projection archiving takes its candidates from."""
ROLE: Final = "retention"
"""The election name: one host at a time runs the schedule."""
BATCH_JOBS: Final[int] = Settings.model_fields["archive_batch_jobs"].default
"""Jobs archived per transaction by default (``JOBTRAIL_ARCHIVE_BATCH_JOBS``)."""
WAL_MB_PER_S: Final[float] = Settings.model_fields["archive_wal_mb_per_s"].default
"""MB of WAL archiving may write a second by default (``JOBTRAIL_ARCHIVE_WAL_MB_PER_S``)."""
PURGE_BATCH_EVENTS: Final = 20_000
"""About how many archived events one export file (and one purge transaction) holds."""
FILES_PER_RECORD: Final = 1000
"""Removed export files listed per ``log.export_files_removed`` event."""
_BEGINNING: Final = datetime(1, 1, 1, tzinfo=UTC)
_Kind = Literal["export-data", "generate-report"]


class ViewsBehindError(jobstore.JobstoreError):
    """The job views did not catch up with the log in time; archiving waits a run."""


class ExportMismatchError(jobstore.JobstoreError):
    """An export file read back differs from what was written; nothing was purged."""


def configuration_problem(settings: Settings) -> str | None:
    """One line naming what to set when the retention settings are unsafe; else None.

    Purging deletes archived events for good, so it needs both its window and a folder to
    export them to first; that folder must be writable now, and must not be one the
    export-file cleanup sweeps.
    """
    days, folder = settings.archive_days, settings.archive_export_dir
    if days is None:
        return None
    if folder is None:
        return (
            f"refusing to start: JOBTRAIL_ARCHIVE_DAYS={days} purges archived events, which "
            "jobtrail does only after exporting them: set JOBTRAIL_ARCHIVE_EXPORT_DIR to a "
            "folder for the exports (or unset JOBTRAIL_ARCHIVE_DAYS to keep the archive)"
        )
    swept = settings.export_keep_days is not None or settings.report_keep_days is not None
    if swept and _overlaps(folder, settings.exports_dir):
        return (
            f"refusing to start: JOBTRAIL_ARCHIVE_EXPORT_DIR={folder} overlaps the export "
            f"folder {settings.exports_dir}, whose old files are removed: set "
            "JOBTRAIL_ARCHIVE_EXPORT_DIR to a folder of its own"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return (
            f"refusing to start: JOBTRAIL_ARCHIVE_EXPORT_DIR={folder} is not a writable "
            f"folder ({exc.strerror or exc}): create it or set it to one this host can write"
        )
    return None


def enabled(settings: Settings) -> bool:
    """Whether the settings ask for any retention work (archive, purge, or file removal)."""
    return bool(
        settings.retention_days
        or settings.archive_days is not None
        or settings.export_keep_days is not None
        or settings.report_keep_days is not None
    )


async def schedule(ctx: HostContext) -> None:
    """The host's background task (``jobtrail serve`` registers it): :meth:`Retention.run`.

    A configuration :func:`configuration_problem` refuses (``serve`` refuses it at start)
    runs nothing: purging without its safeguards is never an option.
    """
    problem = configuration_problem(ctx.settings)
    if problem is not None:
        log.error("retention not started", problem=problem)
        return
    await Retention(ctx.store, ctx.dsn, ctx.settings).run()


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


@dataclass(frozen=True, slots=True)
class Export:
    """An export file written, synced and verified: where, how big, its sha256."""

    path: Path
    sha256: str
    size: int


class ArchiveExporter:
    """Writes a purge batch as gzip JSON Lines, durably, and proves it reads back intact."""

    def write(self, path: Path, lines: Sequence[bytes]) -> Export:
        """Write ``lines`` to ``path`` (fsync file, rename, fsync folder), then verify it."""
        content = b"".join(lines)
        compressed = gzip.compress(content, mtime=0)
        digest = hashlib.sha256(compressed).hexdigest()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(compressed)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        back = self.read_back(path)
        if hashlib.sha256(back).hexdigest() != digest:
            raise ExportMismatchError(
                f"export {path} read back with a sha256 other than the one written "
                f"({digest}); nothing was purged"
            )
        if gzip.decompress(back) != content:
            raise ExportMismatchError(
                f"export {path} does not decompress to the events written; nothing was purged"
            )
        return Export(path, digest, len(compressed))

    def read_back(self, path: Path) -> bytes:
        """The file's bytes as the filesystem gives them back."""
        return path.read_bytes()


def read_export(path: Path) -> list[dict[str, Any]]:
    """The archived rows an export file holds (each: every column of the archived event)."""
    import orjson

    with gzip.open(path, "rb") as lines:
        return [orjson.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True, slots=True)
class Pace:
    """How hard archiving may press on the database: jobs per transaction, WAL per second.

    What an append waits for while archiving runs is the WAL (bench/archive.py): its commit
    must flush the log up to its own commit record, archiving's WAL before it included,
    and the disk that writes it also takes archiving's data pages.  So archiving moves
    ``batch_jobs`` jobs per transaction (~1.2 kB of WAL per event moved: the archived row
    and its index entries, the deletion, the first change of each page after a checkpoint
    in full), then pauses until the WAL the batch wrote, at ``wal_mb_per_s``, is paid for.
    The WAL is the server's, read before and after the batch: work of others in that short
    window counts against archiving, never the other way round.
    """

    batch_jobs: int = BATCH_JOBS
    wal_mb_per_s: float = WAL_MB_PER_S

    def __post_init__(self) -> None:
        """Refuse a pace that could not work, naming what would."""
        if self.batch_jobs < 1:
            raise ValueError(f"batch_jobs={self.batch_jobs}: archive at least 1 job per batch")
        if not self.wal_mb_per_s > 0:
            raise ValueError(f"wal_mb_per_s={self.wal_mb_per_s}: use a number above 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> Pace:
        """``JOBTRAIL_ARCHIVE_BATCH_JOBS`` and ``JOBTRAIL_ARCHIVE_WAL_MB_PER_S``."""
        return cls(settings.archive_batch_jobs, settings.archive_wal_mb_per_s)

    def pause_after(self, wal_bytes: int, took: float) -> float:
        """Seconds to wait after a batch that wrote ``wal_bytes`` in ``took`` seconds."""
        return max(0.0, wal_bytes / (self.wal_mb_per_s * 1e6) - took)


async def archive_finished(
    store: EventStore,
    finished_before: datetime,
    retention_days: int,
    pace: Pace | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Archive every finished job that ended before ``finished_before``; return how many.

    Batches of ``pace.batch_jobs`` jobs, each one transaction of ``archive_streams`` (which
    checks each job again: unfinished or newer jobs stay), paced by the WAL they write
    (:class:`Pace`; its defaults when None), pausing with ``sleep``.  Used by the schedule
    and by cleanup-old-data.
    """
    pace = pace or Pace()
    clock = asyncio.get_running_loop().time
    archived = 0
    after: tuple[datetime, str] = (_BEGINNING, "")
    while True:
        began, wal = clock(), await store.pool.fetchval(_Q["wal_position"])
        rows = await store.pool.fetch(
            _Q["finished_before"], finished_before, *after, pace.batch_jobs
        )
        if not rows:
            break
        moved = await store.archive_streams(
            [job_state.stream_id(row["job_id"]) for row in rows], finished_before, retention_days
        )
        archived += len(moved)
        after = (rows[-1]["finished_at"], rows[-1]["job_id"])
        if len(rows) < pace.batch_jobs:
            break
        written = await store.pool.fetchval(_Q["wal_position"]) - wal
        await sleep(pace.pause_after(int(written), clock() - began))
    return archived


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one retention run did."""

    archived_jobs: int = 0
    purged_events: int = 0
    removed_files: int = 0
    errors: list[str] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


class Retention:
    """The retention schedule of a database, run by whichever host holds its role."""

    def __init__(
        self,
        store: EventStore,
        dsn: str,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _now,
        exporter: ArchiveExporter | None = None,
        pace: Pace | None = None,
        leader_retry: float = 5.0,
        views_wait: float = 120.0,
    ) -> None:
        """``clock`` tells the time (tests move it); ``exporter`` writes purge exports;
        ``pace`` is archiving's (default: from ``settings``)."""
        self.store = store
        self.dsn = dsn
        self.settings = settings
        self.clock = clock
        self.exporter = exporter or ArchiveExporter()
        self.pace = pace or Pace.from_settings(settings)
        self.leader_retry = leader_retry
        self.views_wait = views_wait
        self.host = f"{socket.gethostname()}:{os.getpid()}"

    async def run(self) -> None:
        """Forever: wait for the role, then run whenever the schedule says."""
        election = jobstore.Election(self.dsn, ROLE, self.leader_retry)
        while True:
            try:
                async with election.lead() as lease:
                    await self._lead(lease)
            except (jobstore.JobstoreError, asyncpg.PostgresError, OSError) as exc:
                log.warning("retention paused", error=str(exc)[:300], retry_in=self.leader_retry)
            except Exception:  # a bug must not end the schedule for good: log it, go on
                log.exception("retention run crashed", retry_in=self.leader_retry)
            await asyncio.sleep(self.leader_retry)

    async def _lead(self, lease: jobstore.Lease) -> None:
        while True:
            due = await self.store.pool.fetchval(_Q["next_run"])
            while due is not None and (wait := (due - self.clock()).total_seconds()) > 0:
                await asyncio.sleep(min(wait, 5.0))
                await lease.wanted()  # raises LeadershipLost when the role's connection ended
            await self.run_once()

    async def run_once(self) -> RunReport:
        """One run: archive, purge, remove old files; recorded in ``retention_runs``."""
        run_id = await self.store.pool.fetchval(_Q["run_started"], self.host)
        report = RunReport()
        try:
            report = RunReport(
                archived_jobs=await self._step("archive", self.archive, report.errors),
                purged_events=await self._step("purge", self.purge, report.errors),
                removed_files=await self._step(
                    "remove files", self.remove_old_files, report.errors
                ),
                errors=report.errors,
            )
        finally:
            next_run = self.clock() + timedelta(seconds=self.settings.retention_interval_seconds)
            await self.store.pool.execute(
                _Q["run_finished"],
                run_id,
                report.archived_jobs,
                report.purged_events,
                report.removed_files,
                next_run,
                "; ".join(report.errors) or None,
            )
        log.info("retention run", **asdict(report), next_run=next_run.isoformat())
        return report

    async def _step(self, name: str, step: Callable[[], Any], errors: list[str]) -> int:
        """Run one step; a failure is recorded and the run goes on with the next step."""
        try:
            return int(await step())
        except (jobstore.JobstoreError, asyncpg.PostgresError, OSError) as exc:
            log.error("retention step failed", step=name, error=str(exc)[:500])
            errors.append(f"{name}: {exc}")
            return 0

    async def archive(self) -> int:
        """Archive the finished jobs past the retention; 0 when retention is off."""
        days = self.settings.retention_days
        if not days:
            return 0
        # Candidates come from the views: let them catch up with the log first, so a run
        # right after a start (or a rebuild) does not find nothing and wait a whole interval.
        head = await self.store.last_position()
        try:
            await projections.wait_for_position(
                self.store.pool, head, timeout=self.views_wait, names=[VIEW]
            )
        except projections.ProjectionError as exc:
            raise ViewsBehindError(f"archiving skipped this run: {exc}") from None
        cutoff = self.clock() - timedelta(days=days)
        return await archive_finished(self.store, cutoff, days, self.pace)

    async def purge(self) -> int:
        """Export, verify, then delete archived events past the archive window."""
        days, folder = self.settings.archive_days, self.settings.archive_export_dir
        if days is None or folder is None:
            return 0
        cutoff = self.clock() - timedelta(days=days)
        purged = 0
        while True:
            streams = [
                r["stream_id"]
                for r in await self.store.pool.fetch(
                    _Q["purge_candidates"], cutoff, PURGE_BATCH_EVENTS
                )
            ]
            if not streams:
                return purged
            rows = await self.store.pool.fetch(_Q["archived_rows"], streams)
            first, last = rows[0]["position"], rows[-1]["position"]
            stamp = self.clock().strftime("%Y%m%dT%H%M%S")
            path = folder / f"archive-{first:012d}-{last:012d}-{stamp}.jsonl.gz"
            lines = [row["line"].encode() + b"\n" for row in rows]
            done = await asyncio.to_thread(self.exporter.write, path, lines)
            purged += await self.store.pool.fetchval(
                _Q["purge_archive"],
                streams,
                [row["position"] for row in rows],
                done.sha256,
                str(done.path),
                done.size,
                cutoff,
                days,
            )
            log.info("archived events purged", file=str(path), events=len(rows), sha256=done.sha256)

    async def remove_old_files(self) -> int:
        """Remove export-data and generate-report files past their own windows."""
        removed = 0
        now = self.clock()
        kinds: list[tuple[_Kind, int | None, Callable[[Path, float], list[Path]]]] = [
            ("export-data", self.settings.export_keep_days, export.old_files),
            ("generate-report", self.settings.report_keep_days, report.old_files),
        ]
        root = self.settings.exports_dir
        for kind, keep, old_files in kinds:
            if keep is None:
                continue
            older = now - timedelta(days=keep)
            files = await asyncio.to_thread(old_files, root, older.timestamp())
            for start in range(0, len(files), FILES_PER_RECORD):
                chunk = files[start : start + FILES_PER_RECORD]
                size = await asyncio.to_thread(_remove, chunk)
                event = job_events.ExportFilesRemoved(
                    kind=kind,
                    files=[str(p.relative_to(root.resolve())) for p in chunk],
                    bytes=size,
                    older_than=older,
                    keep_days=keep,
                )
                await self.store.append(f"retention-{uuid.uuid4()}", [event], jobstore.NO_STREAM)
                removed += len(chunk)
        return removed


def _remove(paths: Sequence[Path]) -> int:
    size = 0
    for path in paths:
        try:
            size += path.lstat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
    return size


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    """What is kept, what is archived, what was purged and when, and the next run."""

    retention_days: int
    archive_days: int | None
    archive_export_dir: str | None
    export_keep_days: int | None
    report_keep_days: int | None
    interval_seconds: float
    enabled: bool
    jobs: int
    unfinished_jobs: int
    oldest_job_at: datetime | None
    due_jobs: int
    archived_events: int
    oldest_archived_at: datetime | None
    newest_archived_at: datetime | None
    due_purge_events: int
    archived_jobs_by_schedule: int
    purged_events: int
    last_purge_at: datetime | None
    removed_files: int
    last_removal_at: datetime | None
    last_run: dict[str, Any] | None
    next_run_at: datetime | None
    """None when retention is off, or before its first run."""

    def to_json(self) -> dict[str, Any]:
        """The status as JSON-ready data (times in ISO 8601)."""
        return {k: _plain(v) for k, v in asdict(self).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def status(
    pool: asyncpg.Pool, settings: Settings, now: datetime | None = None
) -> RetentionStatus:
    """The retention status of the database ``pool`` opens, under ``settings``."""
    now = now or _now()
    days = settings.retention_days
    keep_cutoff = now - timedelta(days=days) if days else _BEGINNING
    purge_cutoff = (
        now - timedelta(days=settings.archive_days) if settings.archive_days else _BEGINNING
    )
    kept = await pool.fetchrow(_Q["status_log"], keep_cutoff)
    archive = await pool.fetchrow(_Q["status_archive"], purge_cutoff)
    runs = await pool.fetchrow(_Q["status_runs"])
    last = await pool.fetchrow(_Q["last_run"])
    next_run = await pool.fetchval(_Q["next_run"])
    assert kept is not None and archive is not None and runs is not None
    return RetentionStatus(
        retention_days=days,
        archive_days=settings.archive_days,
        archive_export_dir=str(settings.archive_export_dir)
        if settings.archive_export_dir
        else None,
        export_keep_days=settings.export_keep_days,
        report_keep_days=settings.report_keep_days,
        interval_seconds=settings.retention_interval_seconds,
        enabled=enabled(settings),
        jobs=kept["jobs"],
        unfinished_jobs=kept["unfinished_jobs"],
        oldest_job_at=kept["oldest_job_at"],
        due_jobs=kept["due_jobs"] if days else 0,
        archived_events=archive["archived_events"],
        oldest_archived_at=archive["oldest_archived_at"],
        newest_archived_at=archive["newest_archived_at"],
        due_purge_events=archive["due_events"] if settings.archive_days else 0,
        archived_jobs_by_schedule=int(runs["archived_jobs"]),
        purged_events=int(runs["purged_events"]),
        last_purge_at=runs["last_purge_at"],
        removed_files=int(runs["removed_files"]),
        last_removal_at=runs["last_removal_at"],
        last_run=dict(last) if last is not None else None,
        next_run_at=next_run if enabled(settings) else None,
    )
