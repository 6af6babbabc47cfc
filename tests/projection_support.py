"""Helpers for the projection tests: job events, appends, and snapshots of the views."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

import jobstore
from jobstore import job_events

VIEW_TABLES = ("job_executions", "job_attempts", "job_stats", "job_durations")
_ORDER = {
    "job_executions": "job_id",
    "job_attempts": "job_id, dispatch, attempt",
    "job_stats": "job_type, status",
    "job_durations": "job_type, bucket",
}


def new_job_id() -> str:
    """A fresh job id."""
    return str(uuid.uuid4())


def dispatched(job_id: str, **fields: Any) -> job_events.JobDispatched:
    """A first dispatch of ``job_id`` (fields override the defaults)."""
    values: dict[str, Any] = {
        "job_id": job_id,
        "dispatch": 1,
        "job_type": "cleanup-old-data",
        "payload": {"retention": 30},
        "metadata": {"user_id": 7, "organization_id": 3},
        "options": {"retries": 2},
        "source": "api",
    }
    values.update(fields)
    return job_events.JobDispatched(**values)


def started(dispatch: int = 1, attempt: int = 1) -> job_events.JobStarted:
    """Attempt ``attempt`` of ``dispatch`` started."""
    return job_events.JobStarted(
        dispatch=dispatch, attempt=attempt, message_id=f"msg_{dispatch}_{attempt}", lease_until=1e9
    )


def completed(dispatch: int = 1, attempt: int = 1, seconds: float = 0.2) -> job_events.JobCompleted:
    """Attempt ``attempt`` of ``dispatch`` completed."""
    return job_events.JobCompleted(dispatch=dispatch, attempt=attempt, duration_seconds=seconds)


def attempt_failed(
    dispatch: int = 1, attempt: int = 1, *, will_retry: bool = True, message: str = "boom"
) -> job_events.JobAttemptFailed:
    """Attempt ``attempt`` of ``dispatch`` failed."""
    return job_events.JobAttemptFailed(
        dispatch=dispatch,
        attempt=attempt,
        error_type="RuntimeError",
        error_message=message,
        will_retry=will_retry,
        duration_seconds=0.1,
    )


def failed(dispatch: int = 1, attempt: int | None = 1) -> job_events.JobFailed:
    """Dispatch ``dispatch`` failed for good."""
    return job_events.JobFailed(
        dispatch=dispatch,
        attempt=attempt,
        reason="retries exhausted",
        error_type="RuntimeError",
        error_message="boom",
    )


def archived(*job_ids: str) -> job_events.StreamsArchived:
    """An archiving of ``job_ids``' streams."""
    return job_events.StreamsArchived(
        stream_ids=[f"job-{j}" for j in job_ids],
        job_ids=list(job_ids),
        finished_before=datetime.now(UTC),
        retention_days=30,
    )


async def append(store: jobstore.EventStore, job_id: str, *events: jobstore.Event) -> int:
    """Append ``events`` to the job's stream; return the last position."""
    positions = await store.append(f"job-{job_id}", list(events))
    return positions[-1]


async def archive(store: jobstore.EventStore, *job_ids: str) -> int:
    """Record the archiving of ``job_ids``; return its position."""
    (position,) = await store.append(f"archive-{uuid.uuid4()}", [archived(*job_ids)])
    return position


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view, in a stable order."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    async with pool.acquire() as conn:
        for table in VIEW_TABLES:
            rows = await conn.fetch(f"SELECT * FROM jobtrail.{table} ORDER BY {_ORDER[table]}")
            result[table] = [tuple(row.values()) for row in rows]
    return result


async def counted_stats(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    """job_stats as counting the executions would give it (what the view must equal)."""
    rows = await pool.fetch(
        "SELECT job_type, status, count(*) FROM jobtrail.job_executions "
        "GROUP BY job_type, status ORDER BY job_type, status"
    )
    return [tuple(row.values()) for row in rows]
