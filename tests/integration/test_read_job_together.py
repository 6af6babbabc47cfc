"""Concurrent reads of jobs' streams with their keys are made together, in one statement,
and each caller gets exactly what a read of its own job alone returns."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import jobstore
from jobstore import EventStore, job_events


async def _job(store: EventStore, job_type: str, payload: dict[str, Any]) -> str:
    job_id = str(uuid.uuid4())
    event = job_events.JobDispatched(job_id=job_id, dispatch=1, job_type=job_type, payload=payload)
    await store.append(f"job-{job_id}", [event], "no_stream")
    return job_id


def _seen(read: tuple[list[jobstore.RecordedEvent], Any]) -> tuple[Any, ...]:
    events, keys = read
    opened = {kid: key is not None for kid, key in keys.keys.items()}
    return [(e.stream_id, e.version, e.event) for e in events], opened, keys.exists


async def test_concurrent_reads_are_one_statement_and_match_reads_alone(
    store: EventStore,
) -> None:
    keyed = await _job(store, "send-email", {"to": "a@example.com", "subject": "s", "body": "b"})
    plain = [await _job(store, "cleanup-old-data", {"retention": 30}) for _ in range(3)]
    missing = str(uuid.uuid4())
    jobs = [keyed, *plain, missing]
    alone = [_seen(await store.read_job(f"job-{j}", j)) for j in jobs]

    statements: list[str] = []
    fetch = store._fetch

    async def counted(sql: str, *args: Any) -> Any:
        statements.append(sql)
        return await fetch(sql, *args)

    store._fetch = counted  # type: ignore[method-assign]
    together = await asyncio.gather(*(store.read_job(f"job-{j}", j) for j in jobs))

    assert [_seen(r) for r in together] == alone
    assert len(statements) == 1, "concurrent reads were not made in one statement"
    assert alone[0][1] == {keyed: True} and alone[0][2]  # the keyed job's key was read
    assert alone[-1] == ([], {missing: False}, False)  # no stream, no key
