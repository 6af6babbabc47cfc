"""The ``job_attempts`` projection: one row per attempt of each dispatch of each job."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Final

from jobstore import RecordedEvent, job_events, query
from projections import attempt, execution, writer
from projections.attempt import AttemptKey, AttemptRow
from projections.projection import Connection

_Q = query.load("projections", "attempt_view.sql")


class AttemptView:
    """Projection ``job_attempts``: table job_attempts."""

    name: Final = "job_attempts"
    tables: Final = ("job_attempts",)

    async def apply(self, conn: Connection, batch: Sequence[RecordedEvent]) -> None:
        """Fold ``batch`` into the attempt rows (inside the caller's transaction)."""
        steps = _steps(batch)
        if not steps:
            return
        attempts: defaultdict[str, dict[AttemptKey, AttemptRow]] = defaultdict(dict)
        maybe_known = list(writer.jobs_with_rows(batch))
        loaded: set[tuple[str, AttemptKey]] = set()
        for r in await conn.fetch(_Q["load_attempts"], maybe_known) if maybe_known else []:
            key = (r["dispatch"], r["attempt"])
            attempts[r["job_id"]][key] = AttemptRow(*r)
            loaded.add((r["job_id"], key))
        dirty: defaultdict[str, set[AttemptKey]] = defaultdict(set)
        wiped: set[str] = set()
        for job_id, recorded, key in steps:
            if recorded is None:
                attempts[job_id], dirty[job_id] = {}, set()
                wiped.add(job_id)
            else:
                attempt.evolve(job_id, attempts[job_id], recorded)
                dirty[job_id].add(key)
        if wiped:
            await conn.execute(_Q["delete_attempts"], list(wiped))
        changed = [(j, k) for j, keys in dirty.items() for k in keys if k in attempts[j]]
        new = [attempts[j][k] for j, k in changed if (j, k) not in loaded or j in wiped]
        known = [attempts[j][k] for j, k in changed if (j, k) in loaded and j not in wiped]
        await writer.write(conn, "job_attempts", attempt.COLUMNS, _Q["upsert_attempts"], new, known)


Step = tuple[str, RecordedEvent | None, AttemptKey]
"""An event about one attempt of a job, or None where an archiving removes the job."""


def _steps(batch: Sequence[RecordedEvent]) -> list[Step]:
    """The batch's events about attempts, and its archivings, job by job."""
    steps: list[Step] = []
    for recorded in batch:
        stream = recorded.stream_id
        if stream.startswith("job-"):
            key = attempt.key_of(recorded)
            if key is not None:
                steps.append((stream[4:], recorded, key))
        elif isinstance(recorded.event, job_events.StreamsArchived):
            archived = execution.archived_job_ids(recorded.event)
            steps.extend((job_id, None, (0, 0)) for job_id in archived)
    return steps
