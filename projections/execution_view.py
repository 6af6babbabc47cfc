"""The ``job_executions`` projection: one row per job, plus the stats kept alongside it.

For a batch it loads the states of the jobs the batch touches (``execution.state_of``),
folds the events into them in memory with jobstore's ``job_state.apply`` (the one job
model), and writes the changed rows back (``execution.record``).
``job_stats`` and ``job_durations`` change by each touched job's old contribution taken
away and its new one added, so they always equal what counting the rows would give (and
a rebuild reaches the same numbers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Final

from jobstore import JOB_STATUSES, JobState, RecordedEvent, job_state, query
from projections import execution, histogram, writer
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
        steps, maybe_known = writer.job_steps(batch)
        if not steps:
            return
        rows = await conn.fetch(_Q["load_executions"], maybe_known) if maybe_known else []
        before = {r["job_id"]: execution.state_of(r) for r in rows}
        stats, durations = Counter[StatKey](), Counter[DurationKey]()
        _count(before.values(), stats, durations, -1)
        after = _fold(dict(before), steps)  # folds the loaded states in place
        _count(after.values(), stats, durations, +1)
        gone = [job_id for job_id, state in after.items() if state is None and job_id in before]
        if gone:
            await conn.execute(_Q["delete_executions"], gone)
        record = execution.record
        new = [record(s) for job_id, s in after.items() if s is not None and job_id not in before]
        known = [record(s) for job_id, s in after.items() if s is not None and job_id in before]
        await writer.write(
            conn, "job_executions", execution.COLUMNS, _Q["upsert_executions"], new, known
        )
        await _add(conn, stats, "add_stats", "prune_stats")
        await _add(conn, durations, "add_durations", "prune_durations")


def _fold(
    states: dict[str, JobState | None], steps: list[writer.Step]
) -> dict[str, JobState | None]:
    """Each touched job's state after the batch (None: archived), ``states`` changed in place."""
    apply = job_state.apply
    for job_id, recorded in steps:
        states[job_id] = None if recorded is None else apply(states.get(job_id), recorded)
    return states


def _count(
    rows: Iterable[JobState | None],
    stats: Counter[StatKey],
    durations: Counter[DurationKey],
    sign: int,
) -> None:
    """Add (sign +1) or take away (-1) the rows' contributions to the stats."""
    for row in rows:
        if row is None:
            continue
        stats[(row.job_type, row.status)] += sign
        if row.status is JOB_STATUSES.COMPLETED and row.duration_seconds is not None:
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
