"""The ``job_attempts`` projection: one row per attempt of each dispatch of each job."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Final

from jobstore import RecordedEvent, query
from projections import attempt, writer
from projections.attempt import AttemptKey, AttemptRow
from projections.projection import Connection

_Q = query.load("projections", "attempt_view.sql")


class AttemptView:
    """Projection ``job_attempts``: table job_attempts."""

    name: Final = "job_attempts"
    tables: Final = ("job_attempts",)

    async def apply(self, conn: Connection, batch: Sequence[RecordedEvent]) -> None:
        """Fold ``batch`` into the attempt rows (inside the caller's transaction)."""
        steps, maybe_known = writer.job_steps(batch)
        if not steps:
            return
        attempts: defaultdict[str, dict[AttemptKey, AttemptRow]] = defaultdict(dict)
        loaded: set[tuple[str, AttemptKey]] = set()
        for r in await conn.fetch(_Q["load_attempts"], maybe_known) if maybe_known else []:
            key = (r["dispatch"], r["attempt"])
            attempts[r["job_id"]][key] = AttemptRow(*r)
            loaded.add((r["job_id"], key))
        dirty: defaultdict[str, set[AttemptKey]] = defaultdict(set)
        wiped: set[str] = set()
        apply = attempt.apply
        for job_id, recorded in steps:
            if recorded is None:
                attempts[job_id], dirty[job_id] = {}, set()
                wiped.add(job_id)
            elif (changed := apply(job_id, attempts[job_id], recorded)) is not None:
                dirty[job_id].add(changed)
        if wiped:
            await conn.execute(_Q["delete_attempts"], list(wiped))
        touched = [(j, k) for j, keys in dirty.items() for k in keys if k in attempts[j]]
        record = attempt.record
        new = [record(attempts[j][k]) for j, k in touched if (j, k) not in loaded or j in wiped]
        known = [record(attempts[j][k]) for j, k in touched if (j, k) in loaded and j not in wiped]
        await writer.write(conn, "job_attempts", attempt.COLUMNS, _Q["upsert_attempts"], new, known)
