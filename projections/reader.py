"""Reading the views: filtered pages of job executions, one job, its attempts, its history.

Lists are newest first with a keyset cursor, so a page costs the same however deep it is.
``get_job_history`` reads the job's own stream (always current); the rest read the views,
which trail the log by the projection lag (see ``status.wait_for_position``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeAlias, cast

import asyncpg

from jobstore import JOB_STATUSES, EventStore, JobExecution, JobState, RecordedEvent, query
from projections import cursor as keyset
from projections import errors, execution
from projections.attempt import AttemptRow
from projections.filter import JobFilter, check_job_id, parse_status

_Q = query.load("projections", "reader.sql")
MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 50

Source: TypeAlias = asyncpg.Pool | asyncpg.Connection
"""Where the views are read from: the pool, or a connection already in a transaction
(the API's, which bounds every query with a statement timeout)."""


@contextlib.asynccontextmanager
async def snapshot(source: Source) -> AsyncIterator[asyncpg.Connection]:
    """A connection reading one snapshot: from a pool, a new read-only transaction; a given
    connection as it is (inside its caller's transaction)."""
    if not isinstance(source, asyncpg.Pool):
        yield source
        return
    async with (
        source.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        yield cast(asyncpg.Connection, conn)  # the pool's proxy behaves as its connection


@dataclass(frozen=True, slots=True)
class JobExecutionPage:
    """One page of a list, and the cursor of the next page (None on the last one)."""

    items: list[JobExecution]
    next_cursor: str | None


def check_limit(limit: object) -> int:
    """``limit`` if it is a page size from 1 to 500, else InvalidFilterError('limit')."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        shown = repr(limit) if len(repr(limit)) <= 40 else repr(limit)[:37] + "..."
        raise errors.InvalidFilterError("limit", f"{shown} is not an integer from 1 to {MAX_LIMIT}")
    return limit


async def list_job_executions(
    pool: asyncpg.Pool,
    *,
    status: JOB_STATUSES | str | None = None,
    type: str | None = None,
    user_id: int | None = None,
    organization_id: int | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    error_contains: str | None = None,
    schedule_id: str | None = None,
    source: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> JobExecutionPage:
    """Job executions matching every filter given, newest first, ``limit`` (≤ 500) per page.

    ``source`` is where the job's current dispatch came from (api, schedule, replay,
    recovery); ``schedule_id`` the schedule whose run minted it.
    """
    job_filter = JobFilter(
        status=parse_status(status),
        type=type,
        user_id=user_id,
        organization_id=organization_id,
        created_from=created_from,
        created_to=created_to,
        error_contains=error_contains,
        schedule_id=schedule_id,
        source=source,
    )
    return await list_page(pool, job_filter, cursor=cursor, limit=limit)


async def list_page(
    pool: Source,
    job_filter: JobFilter,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor_key: bytes = keyset.DEFAULT_KEY,
) -> JobExecutionPage:
    """A page of ``job_filter``'s jobs after ``cursor`` (whose HMAC key is ``cursor_key``)."""
    limit = check_limit(limit)
    digest = job_filter.digest()
    after = None if cursor is None else keyset.decode(cursor_key, cursor, digest)
    rows = await select_jobs(pool, job_filter, after=after, limit=limit + 1)
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = keyset.encode(
            cursor_key, keyset.Position(last.created_at, last.job_id), digest
        )
    return JobExecutionPage([JobExecution.from_state(state) for state in items], next_cursor)


async def select_jobs(
    pool: Source,
    job_filter: JobFilter,
    *,
    replayable_only: bool = False,
    after: keyset.Position | None = None,
    limit: int,
) -> list[JobState]:
    """Up to ``limit`` of ``job_filter``'s jobs after ``after``, newest first: the one query
    behind lists (API, CLI, dashboard) and bulk replay (``replayable_only``)."""
    args = [*job_filter.arguments(), replayable_only, after and after.created_at]
    async with snapshot(pool) as conn:
        await conn.execute(_Q["force_custom_plan"])
        rows = await conn.fetch(_Q["select_jobs"], *args, after and after.job_id, limit)
    return [execution.state_of(row) for row in rows]


async def count_jobs(pool: Source, job_filter: JobFilter, *, replayable_only: bool) -> int:
    """How many jobs ``job_filter`` selects (those a replay accepts, if ``replayable_only``)."""
    async with snapshot(pool) as conn:
        await conn.execute(_Q["force_custom_plan"])
        return int(await conn.fetchval(_Q["count_jobs"], *job_filter.arguments(), replayable_only))


async def get_job_execution(pool: Source, job_id: str) -> JobExecution | None:
    """The job's row in the view, or None if the view has no such job (yet)."""
    row = await pool.fetchrow(_Q["get_job_execution"], check_job_id(job_id))
    return None if row is None else JobExecution.from_state(execution.state_of(row))


async def get_job_attempts(pool: Source, job_id: str) -> list[AttemptRow]:
    """Every attempt of every dispatch of the job, in order."""
    rows = await pool.fetch(_Q["get_job_attempts"], check_job_id(job_id))
    return [AttemptRow(*row) for row in rows]


async def get_job_history(store: EventStore, job_id: str) -> list[RecordedEvent]:
    """The job's events in order, from its stream in the log (empty if there is none)."""
    return await store.read_stream(f"job-{check_job_id(job_id)}")
