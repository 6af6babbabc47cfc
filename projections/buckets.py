"""The ``job_buckets`` projection: status transitions per time bucket and job type.

Every event of a job is folded with jobstore's own ``job_state.apply``; where the job's
status before and after differ, one transition (type, from, to) is counted in the minute,
hour and day (UTC) that hold the event's time.  A job's creation counts as from ``''``,
its archiving (retention) as to ``''``.  So the dashboard draws throughput and failure
rate over time from a few rows, and the counts by type and status at any past moment are
the sum of the transitions before it (``projections.trend``).  A new job event needs
nothing here: the fold says whether it changes the status.

The fold needs only a job's status and the few fields the status rules read (``KEPT``);
they are kept per job in ``job_bucket_jobs``.  Archiving never takes counts away, so the
charts keep what happened: a job archived before this projection saw it (a rebuild, or
a first run over a log retention had thinned) is read back from the archive table.
Minute rows older than ``MINUTES_KEPT`` before the newest event are pruned; the rule
depends on the log alone, so a rebuild reaches the very same rows as the live fold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from jobstore import (
    JOB_STATUSES,
    DispatchOptions,
    JobState,
    RecordedEvent,
    event,
    job_events,
    job_state,
    query,
)
from projections import execution, writer
from projections.projection import Connection

_Q = query.load("projections", "buckets.sql")

MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86400
WIDTHS: Final = (MINUTE, HOUR, DAY)
"""Bucket widths in seconds: every transition is counted at each."""
MINUTES_KEPT: Final = timedelta(days=2)
"""How far before the newest event minute rows are kept (older ones live on in hours)."""
NONE: Final = ""
"""The status before a job's creation and after its archiving."""
KEPT: Final = (
    "job_id",
    "job_type",
    "status",
    "dispatch",
    "attempt",
    "attempts",
    "cancel_requested",
    "ever_completed",
)
"""The fields of a job's state kept per job: those jobstore's status rules read (every
other field of the state the fold rebuilds from the event itself or never reads)."""

_OPTIONS: Final = DispatchOptions()
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Transition = tuple[int, int, str, str, str]
"""(width, bucket start in epoch seconds, job type, from status, to status)."""


class BucketView:
    """Projection ``job_buckets``: its transitions, per-job states, archivings and clock."""

    name: Final = "job_buckets"
    tables: Final = (
        "job_bucket_archives",
        "job_bucket_clock",
        "job_bucket_jobs",
        "job_bucket_minutes",
        "job_buckets",
    )

    async def apply(self, conn: Connection, batch: Sequence[RecordedEvent]) -> None:
        """Fold ``batch`` into the buckets (inside the caller's transaction)."""
        steps, maybe_known, archivings = _steps(batch)
        if not steps and not archivings:
            return
        clock = await conn.fetchval(_Q["read_clock"])
        latest = max(clock or _EPOCH, _minute_of(max(r.recorded_at for r in batch)))
        rows = await conn.fetch(_Q["load_jobs"], maybe_known) if maybe_known else []
        before = {r["job_id"]: _light_state(r) for r in rows}
        counts = _Counts(latest - MINUTES_KEPT)
        states: dict[str, JobState | None] = dict(before)
        unseen: list[tuple[str, RecordedEvent]] = []
        for job_id, recorded in steps:
            state = states.get(job_id)
            if isinstance(recorded.event, job_events.StreamsArchived):
                if state is not None:
                    counts.add(state.job_type, state.status, NONE, recorded.recorded_at)
                else:  # never seen, or archived already: as a later batch would find it
                    unseen.append((job_id, recorded))
                states[job_id] = None
                continue
            old = NONE if state is None else state.status
            state = job_state.apply(state, recorded)
            if state.status != old:
                counts.add(state.job_type, old, state.status, recorded.recorded_at)
            states[job_id] = state
        missing = await _restore(conn, unseen, counts) if unseen else Counter[int]()
        await _write_jobs(conn, before, states)
        await counts.write(conn)
        for recorded in archivings:
            assert isinstance(recorded.event, job_events.StreamsArchived)
            archived = execution.archived_job_ids(recorded.event)
            await conn.execute(
                _Q["add_archive"],
                recorded.position,
                recorded.recorded_at,
                recorded.event.finished_before,
                recorded.event.retention_days,
                len(archived),
                missing[recorded.position],
            )
        if clock is None or latest > clock:
            await conn.execute(_Q["set_clock"], latest)
            await conn.execute(_Q["prune_minutes"], latest - MINUTES_KEPT)


def _steps(
    batch: Sequence[RecordedEvent],
) -> tuple[list[tuple[str, RecordedEvent]], list[str], list[RecordedEvent]]:
    """The batch's job events and archivings (one step per archived job), in log order;
    the jobs that may be known already; the archiving events themselves."""
    steps: list[tuple[str, RecordedEvent]] = []
    seen: set[str] = set()
    known: set[str] = set()
    archivings: list[RecordedEvent] = []
    for recorded in batch:
        job_id = job_state.job_id_of(recorded.stream_id)
        if job_id is not None:
            steps.append((job_id, recorded))
            if job_id not in seen:
                seen.add(job_id)
                if recorded.version > 1:
                    known.add(job_id)
        elif isinstance(recorded.event, job_events.StreamsArchived):
            archivings.append(recorded)
            for archived in sorted(execution.archived_job_ids(recorded.event)):
                steps.append((archived, recorded))
                if archived not in seen:
                    seen.add(archived)
                    known.add(archived)
    return steps, sorted(known), archivings


class _Counts:
    """Transitions counted per bucket, minute rows only from ``horizon`` on."""

    def __init__(self, horizon: datetime) -> None:
        self.horizon = int(horizon.timestamp())
        self.deltas = Counter[Transition]()

    def add(self, job_type: str, old: str, new: str, at: datetime) -> None:
        """Count one transition of a job of ``job_type`` at ``at``."""
        second = int(at.timestamp())
        minute = second - second % MINUTE
        if minute >= self.horizon:
            self.deltas[(MINUTE, minute, job_type, old, new)] += 1
        self.deltas[(HOUR, minute - minute % HOUR, job_type, old, new)] += 1
        self.deltas[(DAY, minute - minute % DAY, job_type, old, new)] += 1

    async def write(self, conn: Connection) -> None:
        """Add the counts to the tables' rows (minutes apart from hours and days)."""
        minutes = [k for k in self.deltas if k[0] == MINUTE]
        coarse = [k for k in self.deltas if k[0] != MINUTE]
        if minutes:
            await conn.execute(
                _Q["add_minutes"],
                [datetime.fromtimestamp(k[1], UTC) for k in minutes],
                [k[2] for k in minutes],
                [k[3] for k in minutes],
                [k[4] for k in minutes],
                [self.deltas[k] for k in minutes],
            )
        if coarse:
            await conn.execute(
                _Q["add_buckets"],
                [k[0] for k in coarse],
                [datetime.fromtimestamp(k[1], UTC) for k in coarse],
                [k[2] for k in coarse],
                [k[3] for k in coarse],
                [k[4] for k in coarse],
                [self.deltas[k] for k in coarse],
            )


async def _restore(
    conn: Connection, unseen: list[tuple[str, RecordedEvent]], counts: _Counts
) -> Counter[int]:
    """Count the transitions of archived jobs this projection had not seen (or saw archived
    already), read from the archive table, then their archiving; return, per archiving's
    position, how many of its jobs have events nowhere."""
    streams = sorted({job_state.stream_id(job_id) for job_id, _ in unseen})
    archived: dict[str, list[RecordedEvent]] = {}
    for row in await conn.fetch(_Q["read_archived_events"], streams):
        recorded = RecordedEvent(
            position=row["position"],
            stream_id=row["stream_id"],
            version=row["version"],
            event=event.decode(row["event_type"], row["schema_version"], row["data"]),
            metadata=row["metadata"],
            recorded_at=row["recorded_at"],
        )
        archived.setdefault(row["stream_id"], []).append(recorded)
    missing = Counter[int]()
    for job_id, archiving in unseen:
        events = archived.get(job_state.stream_id(job_id))
        if not events:
            missing[archiving.position] += 1
            continue
        state: JobState | None = None
        for recorded in events:
            old = NONE if state is None else state.status
            state = job_state.apply(state, recorded)
            if state.status != old:
                counts.add(state.job_type, old, state.status, recorded.recorded_at)
        assert state is not None
        counts.add(state.job_type, state.status, NONE, archiving.recorded_at)
    return missing


async def _write_jobs(
    conn: Connection, before: dict[str, JobState], after: dict[str, JobState | None]
) -> None:
    gone = [job_id for job_id, state in after.items() if state is None and job_id in before]
    if gone:
        await conn.execute(_Q["delete_jobs"], gone)
    new = [_row(s) for job_id, s in after.items() if s is not None and job_id not in before]
    known = [_row(s) for job_id, s in after.items() if s is not None and job_id in before]
    await writer.write(conn, "job_bucket_jobs", KEPT, _Q["upsert_jobs"], new, known)


def _row(s: JobState) -> tuple[object, ...]:
    return (
        *(s.job_id, s.job_type, s.status.value, s.dispatch, s.attempt, s.attempts),
        *(s.cancel_requested, s.ever_completed),
    )


def _light_state(row: execution.Row) -> JobState:
    """A job's state with the kept fields (the rest empty: the status rules do not read
    them, and the fold sets them from the events that carry them)."""
    return JobState(
        job_id=row["job_id"],
        job_type=row["job_type"],
        status=JOB_STATUSES(row["status"]),
        payload={},
        metadata={},
        user_id=None,
        organization_id=None,
        options=_OPTIONS,
        dispatch=row["dispatch"],
        source="api",
        created_at=_EPOCH,
        version=0,
        position=0,
        attempt=row["attempt"],
        attempts=row["attempts"],
        cancel_requested=row["cancel_requested"],
        ever_completed=row["ever_completed"],
    )


def _minute_of(at: datetime) -> datetime:
    second = int(at.timestamp())
    return datetime.fromtimestamp(second - second % MINUTE, UTC)
