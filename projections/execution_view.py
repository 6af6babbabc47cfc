"""The ``job_executions`` projection: one row per job, plus the stats kept alongside it.

For a batch it loads the rows of the jobs the batch touches, folds the events into them
in memory (``execution.evolve``), and writes the changed rows back with one statement.
``job_stats`` and ``job_durations`` change by each touched job's old contribution taken
away and its new one added, so they always equal what counting the rows would give (and
a rebuild reaches the same numbers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Final

from jobstore import RecordedEvent, job_events, query
from projections import execution, histogram, writer
from projections.execution import ExecutionRow
from projections.projection import Connection

_Q = query.load("projections", "execution_view.sql")
StatKey = tuple[str, str]
DurationKey = tuple[str, int]


class ExecutionView:
    """Projection ``job_executions``: tables job_executions, job_stats, job_durations."""

    name: Final = "job_executions"
    tables: Final = ("job_durations", "job_executions", "job_stats")

    async def apply(self, conn: Connection, batch: Sequence[RecordedEvent]) -> None:
        """Fold ``batch`` into the rows and stats (inside the caller's transaction)."""
        steps = _steps(batch)
        if not steps:
            return
        maybe_known = list(writer.jobs_with_rows(batch))
        rows = await conn.fetch(_Q["load_executions"], maybe_known) if maybe_known else []
        before = {r["job_id"]: ExecutionRow(*r) for r in rows}
        stats, durations = Counter[StatKey](), Counter[DurationKey]()
        _count(before.values(), stats, durations, -1)
        after = _fold(before, steps)
        _count(after.values(), stats, durations, +1)
        gone = [job_id for job_id, row in after.items() if row is None and job_id in before]
        if gone:
            await conn.execute(_Q["delete_executions"], gone)
        new = [row for job_id, row in after.items() if row is not None and job_id not in before]
        known = [row for job_id, row in after.items() if row is not None and job_id in before]
        await writer.write(
            conn, "job_executions", execution.COLUMNS, _Q["upsert_executions"], new, known
        )
        await _add(conn, stats, "add_stats", "prune_stats")
        await _add(conn, durations, "add_durations", "prune_durations")


Step = tuple[str, RecordedEvent | None]
"""A job's next event, or None where an archiving removes the job."""


def _steps(batch: Sequence[RecordedEvent]) -> list[Step]:
    """The batch as job-by-job steps (events of job streams, and archivings)."""
    steps: list[Step] = []
    for recorded in batch:
        stream = recorded.stream_id
        if stream.startswith("job-"):
            steps.append((stream[4:], recorded))
        elif isinstance(recorded.event, job_events.StreamsArchived):
            steps.extend((job_id, None) for job_id in execution.archived_job_ids(recorded.event))
    return steps


def _fold(before: dict[str, ExecutionRow], steps: list[Step]) -> dict[str, ExecutionRow | None]:
    """Each touched job's row after the batch (None: archived), folded from copies."""
    after: dict[str, ExecutionRow | None] = {job_id: _copy(row) for job_id, row in before.items()}
    evolve = execution.evolve
    for job_id, recorded in steps:
        after[job_id] = None if recorded is None else evolve(after.get(job_id), recorded)
    return after


def _copy(row: ExecutionRow) -> ExecutionRow:
    return ExecutionRow(*(getattr(row, column) for column in execution.COLUMNS))


def _count(
    rows: Iterable[ExecutionRow | None],
    stats: Counter[StatKey],
    durations: Counter[DurationKey],
    sign: int,
) -> None:
    """Add (sign +1) or take away (-1) the rows' contributions to the stats."""
    for row in rows:
        if row is None:
            continue
        stats[(row.job_type, row.status)] += sign
        if row.status == execution.COMPLETED and row.duration_seconds is not None:
            durations[(row.job_type, histogram.bucket_of(row.duration_seconds))] += sign


async def _add(conn: Connection, deltas: Counter[Any], add: str, prune: str) -> None:
    changes = [(key, delta) for key, delta in deltas.items() if delta != 0]
    if not changes:
        return
    await conn.execute(
        _Q[add],
        [key[0] for key, _ in changes],
        [key[1] for key, _ in changes],
        [delta for _, delta in changes],
    )
    if any(delta < 0 for _, delta in changes):
        await conn.execute(_Q[prune])
