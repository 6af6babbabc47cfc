"""The ``job_attempts`` projection: one row per attempt of each dispatch of each job."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

from jobstore import RecordedEvent, job_events, query
from projections import attempt, execution
from projections.attempt import AttemptKey, AttemptRow
from projections.projection import Connection

_Q = query.load("projections", "attempt_view.sql")


class AttemptView:
    """Projection ``job_attempts``: table job_attempts."""

    name: Final = "job_attempts"
    tables: Final = ("job_attempts",)

    async def apply(self, conn: Connection, batch: Sequence[RecordedEvent]) -> None:
        """Fold ``batch`` into the attempt rows (inside the caller's transaction)."""
        touched = _job_ids(batch)
        if not touched:
            return
        attempts: defaultdict[str, dict[AttemptKey, AttemptRow]] = defaultdict(dict)
        for r in await conn.fetch(_Q["load_attempts"], list(touched)):
            attempts[r["job_id"]][(r["dispatch"], r["attempt"])] = AttemptRow(*r)
        dirty: defaultdict[str, set[AttemptKey]] = defaultdict(set)
        wiped: set[str] = set()
        for recorded in batch:
            job_id = execution.job_id_of(recorded.stream_id)
            if job_id is not None:
                key = attempt.key_of(recorded)
                if key is not None:
                    attempt.evolve(job_id, attempts[job_id], recorded)
                    dirty[job_id].add(key)
            elif isinstance(recorded.event, job_events.StreamsArchived):
                for archived in execution.archived_job_ids(recorded.event):
                    attempts[archived], dirty[archived] = {}, set()
                    wiped.add(archived)
        if wiped:
            await conn.execute(_Q["delete_attempts"], list(wiped))
        changed = [attempts[j][k] for j, keys in dirty.items() for k in keys if k in attempts[j]]
        if changed:
            await conn.execute(_Q["upsert_attempts"], *_columns(changed))


def _job_ids(batch: Sequence[RecordedEvent]) -> set[str]:
    ids: set[str] = set()
    for recorded in batch:
        job_id = execution.job_id_of(recorded.stream_id)
        if job_id is not None:
            if attempt.key_of(recorded) is not None:
                ids.add(job_id)
        elif isinstance(recorded.event, job_events.StreamsArchived):
            ids.update(execution.archived_job_ids(recorded.event))
    return ids


def _columns(rows: list[AttemptRow]) -> list[list[Any]]:
    return [[getattr(row, column) for row in rows] for column in attempt.COLUMNS]
