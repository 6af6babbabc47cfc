"""Writing a batch's rows: rows new to the table by binary COPY, known rows by upsert.

Most rows a batch writes are new (a job's first events); COPY sends them in PostgreSQL's
binary format, which costs the server a fraction of parsing the same rows from JSON.
Rows the table already has go through the view's upsert, sent as one JSON document.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any, Final

import orjson

from jobstore import RecordedEvent, job_events
from projections import execution
from projections.projection import Connection

COPY_FROM: Final = 32
"""Fewer new rows than this go with the upsert: COPY costs an extra round trip."""


def jobs_with_rows(batch: Sequence[RecordedEvent]) -> set[str]:
    """The jobs of ``batch`` that may already have rows: a job whose first event in the
    batch is its stream's first (version 1) has none yet; archived jobs may."""
    seen: set[str] = set()
    known: set[str] = set()
    for recorded in batch:
        stream = recorded.stream_id
        if stream.startswith("job-"):
            job_id = stream[4:]
            if job_id not in seen:
                seen.add(job_id)
                if recorded.version > 1:
                    known.add(job_id)
        elif isinstance(recorded.event, job_events.StreamsArchived):
            known.update(execution.archived_job_ids(recorded.event))
    return known


async def write(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    upsert: str,
    new: list[Any],
    known: list[Any],
) -> None:
    """Insert ``new`` rows (dataclasses with ``columns``) and upsert ``known`` ones."""
    if len(new) < COPY_FROM:
        known, new = known + new, []
    if new:
        values = attrgetter(*columns)
        await conn.copy_records_to_table(
            table, records=[values(row) for row in new], columns=list(columns)
        )
    if known:
        await conn.execute(upsert, orjson.dumps(known))
