"""A batch for the views: its job steps, read once; its rows written back, rows new to the
table by binary COPY, known rows by upsert.

Most rows a batch writes are new (a job's first events); COPY sends them in PostgreSQL's
binary format, which costs the server a fraction of parsing the same rows from JSON.
Rows the table already has go through the view's upsert, sent as one JSON document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import orjson

from jobstore import RecordedEvent, job_events, job_state
from projections import execution
from projections.projection import Connection

COPY_FROM: Final = 32
"""Fewer new rows than this go with the upsert: COPY costs an extra round trip."""
_JOB_STREAM: Final = job_state.STREAM_PREFIX
_JOB_ID_FROM: Final = len(_JOB_STREAM)


Step = tuple[str, RecordedEvent | None]
"""A job's next event, or None where an archiving removes the job."""


class JobSteps(NamedTuple):
    """A batch as the views fold it: job by job, and which jobs may already have rows."""

    steps: list[Step]
    """The events of job streams, and a None per job an archiving removes, in log order."""
    maybe_known: list[str]
    """Jobs that may have rows already: a job whose first event in the batch is its
    stream's first (version 1) has none yet; archived jobs may."""


def job_steps(batch: Sequence[RecordedEvent]) -> JobSteps:
    """The batch's job steps, read in one pass (the views call this for every batch)."""
    steps: list[Step] = []
    seen: set[str] = set()
    known: set[str] = set()
    for recorded in batch:
        stream = recorded.stream_id
        if stream.startswith(_JOB_STREAM):  # job_state.job_id_of, inline: called a lot
            job_id = stream[_JOB_ID_FROM:]
            steps.append((job_id, recorded))
            if job_id not in seen:
                seen.add(job_id)
                if recorded.version > 1:
                    known.add(job_id)
        elif isinstance(recorded.event, job_events.StreamsArchived):
            archived = execution.archived_job_ids(recorded.event)
            steps.extend((job_id, None) for job_id in archived)
            known.update(archived)
    return JobSteps(steps, list(known))


async def write(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    upsert: str,
    new: list[tuple[Any, ...]],
    known: list[tuple[Any, ...]],
) -> None:
    """Insert ``new`` rows and upsert ``known`` ones (each row its values in ``columns``
    order; a JSON column may be given as bytes already encoded, as the jsonb codec takes it)."""
    if len(new) < COPY_FROM:
        known, new = known + new, []
    if new:
        await conn.copy_records_to_table(table, records=new, columns=list(columns))
    if known:
        rows = [dict(zip(columns, row, strict=True)) for row in known]
        await conn.execute(upsert, orjson.dumps(rows, default=orjson.Fragment))
