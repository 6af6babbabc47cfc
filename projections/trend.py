"""Jobs over time, read from the ``job_buckets`` projection: throughput and failure rate
per bucket over a window, and the counts by type and status as they were at a moment.

A window reads one width of rows (an hour: minutes; a day or a week: hours), so a
week's chart is a few hundred rows whatever the number of jobs.  The counts at a moment
are every transition before it summed (whole days, then hours, then minutes), never the
log folded; to the minute while minute rows are kept, else to the hour.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from jobstore import JOB_STATUSES, query
from projections import buckets, errors, reader

_Q = query.load("projections", "trend.sql")


@dataclass(frozen=True, slots=True)
class Window:
    """A span the charts cover, and the width of bucket it reads."""

    name: str
    span: timedelta
    width: int

    @property
    def points(self) -> int:
        """Buckets in the window."""
        return int(self.span.total_seconds()) // self.width


WINDOWS: Final = {
    "hour": Window("hour", timedelta(hours=1), buckets.MINUTE),
    "day": Window("day", timedelta(days=1), buckets.HOUR),
    "week": Window("week", timedelta(days=7), buckets.HOUR),
}
"""The windows the charts offer, by name."""


def window(name: str) -> Window:
    """The window called ``name``; InvalidFilterError names the valid ones otherwise."""
    found = WINDOWS.get(name)
    if found is None:
        raise errors.InvalidFilterError(
            "window", f"{name[:20]!r} is not a window; use one of {', '.join(WINDOWS)}"
        )
    return found


@dataclass(slots=True)
class Point:
    """One bucket: how many jobs were created, started, completed, failed, retried, cancelled."""

    start: datetime
    created: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0

    @property
    def failure_rate(self) -> float | None:
        """Failed among the jobs that finished in the bucket (None if none finished)."""
        finished = self.completed + self.failed
        return self.failed / finished if finished else None


@dataclass(frozen=True, slots=True)
class Series:
    """A window's buckets, oldest first, ending with the bucket that holds ``end``."""

    window: Window
    end: datetime
    points: list[Point]
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per job type, transitions into each status over the whole window."""

    @property
    def completed(self) -> int:
        """Jobs completed in the window."""
        return sum(p.completed for p in self.points)

    @property
    def failed(self) -> int:
        """Jobs failed in the window."""
        return sum(p.failed for p in self.points)


_INTO: Final = {
    JOB_STATUSES.PROCESSING.value: "started",
    JOB_STATUSES.COMPLETED.value: "completed",
    JOB_STATUSES.FAILED.value: "failed",
    JOB_STATUSES.RETRYING.value: "retried",
    JOB_STATUSES.CANCELLED.value: "cancelled",
}


async def series(
    pool: reader.Source, name: str, end: datetime, job_type: str | None = None
) -> Series:
    """The buckets of window ``name`` up to ``end`` (of one type, or all for None)."""
    win = window(name)
    last = _floor(end, win.width)
    first = last - timedelta(seconds=win.width * (win.points - 1))
    stop = last + timedelta(seconds=win.width)
    starts = (first + timedelta(seconds=win.width * i) for i in range(win.points))
    by_start = {start: Point(start) for start in starts}
    query = _Q["read_series_minutes" if win.width == buckets.MINUTE else "read_series"]
    rows = await pool.fetch(query, win.width, first, stop, job_type)
    by_type: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        if row["by_type"]:
            if row["to_status"] != buckets.NONE:
                by_type[row["job_type"]][row["to_status"]] = row["all_count"]
            continue
        point = by_start.get(row["bucket"])
        if point is None:
            continue
        if row["from_status"] == buckets.NONE:
            point.created += row["count"]
        into = _INTO.get(row["to_status"])
        if into is not None:
            setattr(point, into, getattr(point, into) + row["count"])
    return Series(win, end, list(by_start.values()), dict(sorted(by_type.items())))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The counts by type and status as they were at ``moment`` (the moment asked for,
    rounded down to ``precision``)."""

    asked: datetime
    moment: datetime
    precision: str
    by_type: dict[str, dict[str, int]]
    first_day: datetime | None
    """The first day with any transition (None: the projection holds none yet)."""

    @property
    def by_status(self) -> dict[str, int]:
        """Jobs per status over every type."""
        totals: defaultdict[str, int] = defaultdict(int)
        for per_type in self.by_type.values():
            for status, count in per_type.items():
                totals[status] += count
        return dict(totals)

    @property
    def total(self) -> int:
        """Every job counted."""
        return sum(self.by_status.values())


async def counts_at(pool: reader.Source, moment: datetime) -> Snapshot:
    """The counts by job type and status at ``moment`` (timezone-aware)."""
    if moment.tzinfo is None:
        raise errors.InvalidFilterError("at", "give a time with its timezone (UTC)")
    async with reader.snapshot(pool) as conn:
        bounds = await conn.fetchrow(_Q["read_range"])
        assert bounds is not None  # an aggregate: always one row
        used, precision = _rounded(moment, bounds["latest"])
        day = _floor(used, buckets.DAY)
        hour = _floor(used, buckets.HOUR)
        rows = await conn.fetch(_Q["read_before"], day, hour, used)
    net: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        per_type = net[row["job_type"]]
        if row["to_status"] != buckets.NONE:
            per_type[row["to_status"]] += row["count"]
        if row["from_status"] != buckets.NONE:
            per_type[row["from_status"]] -= row["count"]
    by_type = {
        name: {s: n for s, n in sorted(per.items()) if n}
        for name, per in sorted(net.items())
        if any(per.values())
    }
    return Snapshot(moment, used, precision, by_type, bounds["first_day"])


@dataclass(frozen=True, slots=True)
class Archiving:
    """One retention run as the projection met it."""

    position: int
    archived_at: datetime
    finished_before: datetime
    retention_days: int
    jobs: int
    missing: int


@dataclass(frozen=True, slots=True)
class ArchiveNote:
    """Where retention moved history away: how many runs and jobs, the latest cutoff, and
    the most recent runs.  ``missing`` jobs' events are in neither the log nor the archive,
    so no count holds them."""

    runs: int
    jobs: int
    missing: int
    finished_before: datetime | None
    recent: list[Archiving]


async def archive_note(pool: reader.Source, recent: int = 5) -> ArchiveNote:
    """What retention has archived, as the bucket projection recorded it."""
    async with reader.snapshot(pool) as conn:
        totals = await conn.fetchrow(_Q["read_archive_totals"])
        assert totals is not None  # an aggregate: always one row
        rows = await conn.fetch(_Q["read_archives"], recent)
    return ArchiveNote(
        runs=totals["runs"],
        jobs=totals["jobs"],
        missing=totals["missing"],
        finished_before=totals["finished_before"],
        recent=[Archiving(**dict(row)) for row in rows],
    )


def _rounded(moment: datetime, latest: datetime | None) -> tuple[datetime, str]:
    """The moment the rows can answer for: its minute while minute rows cover its hour,
    else its hour."""
    minute = _floor(moment, buckets.MINUTE)
    hour = _floor(moment, buckets.HOUR)
    if latest is None or hour >= latest - buckets.MINUTES_KEPT:
        return minute, "minute"
    return hour, "hour"


def _floor(moment: datetime, width: int) -> datetime:
    second = int(moment.timestamp())
    return datetime.fromtimestamp(second - second % width, UTC)
