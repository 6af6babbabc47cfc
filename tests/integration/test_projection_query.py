"""Queries over the views: filters, keyset pages, one job, its history, and the stats."""

from __future__ import annotations

import asyncpg
import pytest

import jobstore
import projections
from projections import reader, stats
from tests.projection_support import (
    append,
    attempt_failed,
    completed,
    dispatched,
    failed,
    new_job_id,
    started,
)


async def catch_up(pool: asyncpg.Pool, dsn: str) -> None:
    await projections.ProjectionRunner(pool, dsn).run_until_caught_up()


async def ids(page: reader.JobExecutionPage) -> list[str]:
    return [item.job_id for item in page.items]


async def test_each_filter_selects_its_jobs(pool: asyncpg.Pool, db_dsn: str) -> None:
    store = jobstore.EventStore(pool)
    email, report, other_user = new_job_id(), new_job_id(), new_job_id()
    await append(store, email, dispatched(email, job_type="send-email"), started(), failed())
    await append(store, report, dispatched(report, job_type="export-data"), started())
    await append(
        store,
        other_user,
        dispatched(other_user, metadata={"user_id": 99}),
        started(),
        attempt_failed(message="disk 100%_full"),
    )
    await catch_up(pool, db_dsn)
    row = await pool.fetchrow(
        "SELECT created_at FROM jobtrail.job_executions WHERE job_id=$1", report
    )

    async def select(**filters: object) -> set[str]:
        page = await reader.list_job_executions(pool, **filters)  # type: ignore[arg-type]
        return {item.job_id for item in page.items}

    assert await select() == {email, report, other_user}
    assert await select(status="failed") == {email}
    assert await select(status=jobstore.JOB_STATUSES.RETRYING) == {other_user}
    assert await select(type="export-data") == {report}
    assert await select(user_id=99) == {other_user}
    assert await select(user_id=7, organization_id=3) == {email, report}
    assert await select(created_from=row["created_at"], created_to=row["created_at"]) == {report}
    assert await select(error_contains="100%_FULL") == {other_user}
    assert await select(error_contains="100%x") == set()
    assert await select(status="failed", type="export-data") == set()


async def test_schedule_and_source_filters_select_their_jobs(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    run, other_run, replayed, plain = (new_job_id() for _ in range(4))
    for job, schedule in ((run, "sched_a"), (other_run, "sched_b")):
        meta = {"user_id": 7, "schedule_id": schedule}
        await append(store, job, dispatched(job, metadata=meta, source="schedule"))
    await append(
        store,
        replayed,
        dispatched(replayed),
        started(),
        failed(),
        dispatched(replayed, dispatch=2, source="replay", reason="retry by hand"),
    )
    await append(store, plain, dispatched(plain), started(), failed())
    await catch_up(pool, db_dsn)

    async def select(**filters: object) -> set[str]:
        page = await reader.list_job_executions(pool, **filters)  # type: ignore[arg-type]
        return {item.job_id for item in page.items}

    assert await select(schedule_id="sched_a") == {run}
    assert await select(source="schedule") == {run, other_run}
    assert await select(source="schedule", schedule_id="sched_b") == {other_run}
    assert await select(source="replay") == {replayed}
    assert await select(source="api") == {plain}
    assert await select(source="recovery") == set()
    assert await select(schedule_id="sched_a", source="api") == set()
    only_api = projections.JobFilter(source="api")
    assert await projections.count_replayable(pool, only_api) == 1


async def test_a_job_with_the_seeds_camelcase_metadata_is_found_by_its_user(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    """{"userId": 7} sets user_id (it used to be stored as an extra key no filter saw)."""
    dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))
    job_id = await dispatcher.enqueue(
        "cleanup-old-data", {"retention": 30}, {"userId": 7, "organizationId": 42}
    )
    await catch_up(pool, db_dsn)
    assert await ids(await reader.list_job_executions(pool, user_id=7)) == [job_id]
    assert await ids(await reader.list_job_executions(pool, organization_id=42)) == [job_id]
    execution = await reader.get_job_execution(pool, job_id)
    assert execution is not None
    assert (execution.user_id, execution.organization_id) == (7, 42)
    assert "userId" not in execution.metadata


async def test_pages_walk_every_job_once_newest_first(pool: asyncpg.Pool, db_dsn: str) -> None:
    store = jobstore.EventStore(pool)
    created = []
    for _ in range(7):
        job = new_job_id()
        await append(store, job, dispatched(job))
        created.append(job)
    await catch_up(pool, db_dsn)

    seen: list[str] = []
    cursor = None
    for expected_size in (3, 3, 1):
        page = await reader.list_job_executions(pool, limit=3, cursor=cursor)
        assert len(page.items) == expected_size
        seen += await ids(page)
        cursor = page.next_cursor
    assert cursor is None
    assert seen == list(reversed(created))


async def test_a_cursor_from_another_filter_or_changed_is_refused(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    for _ in range(3):
        job = new_job_id()
        await append(store, job, dispatched(job))
    await catch_up(pool, db_dsn)
    page = await reader.list_job_executions(pool, limit=1)
    assert page.next_cursor is not None

    with pytest.raises(projections.InvalidCursorError, match="other filters"):
        await reader.list_job_executions(pool, status="pending", cursor=page.next_cursor)
    with pytest.raises(projections.InvalidCursorError, match="cursor: not a cursor"):
        await reader.list_job_executions(pool, cursor=page.next_cursor[:-2] + "xx")


async def test_one_job_its_attempts_and_its_history(pool: asyncpg.Pool, db_dsn: str) -> None:
    store = jobstore.EventStore(pool)
    job = new_job_id()
    await append(store, job, dispatched(job), started(), attempt_failed(), started(attempt=2))
    await append(store, job, completed(attempt=2, seconds=3.0))
    await catch_up(pool, db_dsn)

    execution = await reader.get_job_execution(pool, job)
    assert execution is not None
    assert (execution.status, execution.attempts, execution.duration_seconds) == (
        "completed",
        2,
        3.0,
    )
    attempts = await reader.get_job_attempts(pool, job)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "failed"), (2, "completed")]
    history = await reader.get_job_history(store, job)
    assert [r.type_name for r in history] == [
        "job.dispatched",
        "job.started",
        "job.attempt_failed",
        "job.started",
        "job.completed",
    ]
    assert await reader.get_job_execution(pool, new_job_id()) is None
    assert await reader.get_job_history(store, new_job_id()) == []
    with pytest.raises(projections.InvalidFilterError, match="job_id"):
        await reader.get_job_execution(pool, "1; DROP TABLE jobtrail.events")


async def test_stats_count_per_type_and_status_with_duration_percentiles(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = jobstore.EventStore(pool)
    for seconds in (0.2, 0.2, 0.2, 4.0):
        job = new_job_id()
        await append(store, job, dispatched(job), started(), completed(seconds=seconds))
    job = new_job_id()
    await append(store, job, dispatched(job, job_type="send-email"), started(), failed())
    await catch_up(pool, db_dsn)

    result = await stats.get_job_stats(pool)

    assert (result.total, result.by_status) == (5, {"completed": 4, "failed": 1})
    cleanup = result.by_type["cleanup-old-data"]
    assert cleanup.by_status == {"completed": 4}
    assert cleanup.durations.count == 4
    assert 0.1 <= (cleanup.durations.percentiles[50] or 0) <= 0.25
    assert 2.5 <= (cleanup.durations.percentiles[99] or 0) <= 5.0
    assert result.by_type["send-email"].durations.count == 0
    assert result.to_json()["by_type"]["send-email"]["duration_seconds"]["p50"] is None
