"""The job_buckets projection behind the dashboard's charts and time travel: transitions
per minute, hour and day from jobstore's fold, the counts at any past moment equal to
folding the log up to it, archiving kept, minute rows pruned, and a rebuild reaching the
very same rows."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobstore
import projections
from jobstore import job_events, job_state
from projections import trend
from tests.integration.test_projection_property import SCRIPT, Script, property_db
from tests.projection_support import (
    attempt_failed,
    completed,
    dispatched,
    failed,
    new_job_id,
    started,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TABLES = {
    "job_buckets": "width, bucket, job_type, from_status, to_status",
    "job_bucket_minutes": "bucket, job_type, from_status, to_status",
    "job_bucket_jobs": "job_id",
    "job_bucket_archives": "position",
    "job_bucket_clock": "one",
}
__all__ = ["property_db"]  # the fixture, shared with the views' property test


async def put(pool: asyncpg.Pool, job_id: str, at: datetime, *events: jobstore.Event) -> None:
    """Append ``events`` to the job's stream as recorded at ``at`` (a second apart)."""
    stream = job_state.stream_id(job_id)
    version = await pool.fetchval(
        "SELECT coalesce(max(version), 0) FROM jobtrail.events WHERE stream_id = $1", stream
    )
    for n, event in enumerate(events):
        await pool.execute(
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data,"
            " recorded_at) VALUES ($1, $2, $3, $4, $5::json, $6)",
            stream,
            version + n + 1,
            event.type_name,
            event.schema_version,
            event.to_json_data(),
            at + timedelta(seconds=n),
        )


async def catch_up(pool: asyncpg.Pool, dsn: str) -> None:
    await projections.ProjectionRunner(pool, dsn, batch_size=3).run_until_caught_up()


async def rows(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the projection's tables, in a stable order."""
    return {
        table: [
            tuple(r.values())
            for r in await pool.fetch(f"SELECT * FROM jobtrail.{table} ORDER BY {order}")
        ]
        for table, order in TABLES.items()
    }


async def folded_counts(pool: asyncpg.Pool, before: datetime) -> dict[str, dict[str, int]]:
    """The counts by type and status from folding every job's events recorded before
    ``before`` (what time travel must equal)."""
    store = jobstore.EventStore(pool)
    states: dict[str, jobstore.JobState] = {}
    for recorded in await store.read_all(0, 100_000):
        job_id = job_state.job_id_of(recorded.stream_id)
        if job_id is not None and recorded.recorded_at < before:
            states[job_id] = job_state.apply(states.get(job_id), recorded)
    counts: Counter[tuple[str, str]] = Counter(
        (s.job_type, s.status.value) for s in states.values()
    )
    result: dict[str, dict[str, int]] = {}
    for (job_type, status), n in sorted(counts.items()):
        result.setdefault(job_type, {})[status] = n
    return result


async def a_day_of_jobs(pool: asyncpg.Pool) -> dict[str, str]:
    """Jobs whose lives spread over minutes, hours and days around T0."""
    jobs = {name: new_job_id() for name in ("done", "retried", "failed", "cancelled", "late")}
    await put(pool, jobs["done"], T0, dispatched(jobs["done"]), started(), completed())
    await put(
        pool,
        jobs["retried"],
        T0 + timedelta(minutes=1),
        dispatched(jobs["retried"], job_type="send-email", payload={"to": "a@example.com"}),
        started(),
        attempt_failed(will_retry=True),
    )
    await put(
        pool,
        jobs["retried"],
        T0 + timedelta(hours=2, minutes=30),
        started(attempt=2),
        completed(attempt=2),
    )
    await put(pool, jobs["failed"], T0 + timedelta(minutes=5), dispatched(jobs["failed"]))
    await put(pool, jobs["failed"], T0 + timedelta(days=1, hours=1), started(), failed())
    await put(
        pool,
        jobs["failed"],
        T0 + timedelta(days=1, hours=2),
        dispatched(jobs["failed"], dispatch=2, source="replay"),
    )
    await put(
        pool,
        jobs["cancelled"],
        T0 + timedelta(minutes=7),
        dispatched(jobs["cancelled"]),
        job_events.JobCancelled(dispatch=1, reason="operator"),
    )
    # A callback record after the outcome changes nothing either.
    await put(
        pool,
        jobs["late"],
        T0 + timedelta(days=1, hours=3),
        dispatched(jobs["late"]),
        started(),
        completed(),
        job_events.JobNotified(
            dispatch=1,
            kind="completed",
            notification_id="n1",
            url="https://example.com/cb",
            result="delivered",
            status=200,
        ),
    )
    # A late start of the cancelled dispatch, batches later (the kept state says it was
    # cancelled): no status change.
    await put(pool, jobs["cancelled"], T0 + timedelta(minutes=9), started())
    return jobs


async def test_the_counts_at_any_moment_equal_folding_the_log_up_to_it(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    await a_day_of_jobs(pool)
    await catch_up(pool, db_dsn)
    moments = [
        T0,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
        T0 + timedelta(minutes=6),
        T0 + timedelta(minutes=8),
        T0 + timedelta(hours=3),
        T0 + timedelta(days=1, hours=1, minutes=1),
        T0 + timedelta(days=1, hours=2, minutes=1),
        T0 + timedelta(days=2),
    ]
    for moment in moments:
        snapshot = await trend.counts_at(pool, moment)
        assert snapshot.precision == "minute"
        assert snapshot.by_type == await folded_counts(pool, moment), moment
    now = await trend.counts_at(pool, datetime.now(UTC))
    stats = await projections.get_job_stats(pool)
    assert now.by_type == {name: t.by_status for name, t in stats.by_type.items()}
    assert now.by_status == stats.by_status and now.total == 5


async def test_a_window_counts_completions_failures_and_starts_per_bucket(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    await a_day_of_jobs(pool)
    await catch_up(pool, db_dsn)

    hour = await trend.series(pool, "hour", T0 + timedelta(minutes=59))
    assert len(hour.points) == 60 and hour.points[0].start == T0
    assert (hour.points[0].created, hour.points[0].started, hour.points[0].completed) == (1, 1, 1)
    assert (hour.points[1].created, hour.points[1].retried) == (1, 1)
    assert hour.points[7].cancelled == 1 and hour.points[9].started == 0
    assert (hour.completed, hour.failed) == (1, 0)
    assert hour.points[0].failure_rate == 0.0 and hour.points[3].failure_rate is None

    day = await trend.series(pool, "day", T0 + timedelta(days=1, hours=5))
    assert len(day.points) == 24
    assert (day.completed, day.failed) == (1, 1)
    failing = next(p for p in day.points if p.failed)
    assert failing.start == T0 + timedelta(days=1, hours=1) and failing.failure_rate == 1.0

    week = await trend.series(pool, "week", T0 + timedelta(days=2))
    assert len(week.points) == 168 and (week.completed, week.failed) == (3, 1)
    assert week.by_type["send-email"] == {
        "pending": 1,
        "processing": 2,
        "retrying": 1,
        "completed": 1,
    }
    only_email = await trend.series(pool, "week", T0 + timedelta(days=2), "send-email")
    assert (only_email.completed, only_email.failed) == (1, 0)


async def test_a_rebuild_reaches_the_same_rows_as_the_live_fold(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    await a_day_of_jobs(pool)
    await catch_up(pool, db_dsn)
    live = await rows(pool)
    assert live["job_buckets"] and len(live["job_bucket_jobs"]) == 5

    result = await projections.rebuild(pool, db_dsn, ["job_buckets"], batch_size=2)

    assert result.names == ["job_buckets"]
    assert await rows(pool) == live


async def test_archived_jobs_keep_their_history_in_the_counts_and_a_rebuild_reads_the_archive(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    """Retention moves whole streams out of the log: the charts and the counts before the
    archiving keep those jobs, the counts after it do not (as the views), and a rebuild,
    which never sees their events in the log, reads them from the archive table."""
    store = jobstore.EventStore(pool)
    jobs = await a_day_of_jobs(pool)
    await catch_up(pool, db_dsn)
    before = await rows(pool)

    moved = await store.archive_streams(
        [job_state.stream_id(jobs["done"]), job_state.stream_id(jobs["retried"])],
        datetime.now(UTC),
        7,
    )
    assert len(moved) == 2
    await catch_up(pool, db_dsn)
    archived_at = (await trend.archive_note(pool)).recent[0].archived_at
    live = await rows(pool)
    assert live["job_buckets"] != before["job_buckets"]

    old = await trend.counts_at(pool, T0 + timedelta(days=2))
    assert old.by_type["cleanup-old-data"]["completed"] == 2
    assert old.by_type["send-email"] == {"completed": 1}
    after = await trend.counts_at(pool, archived_at + timedelta(minutes=1))
    assert "send-email" not in after.by_type
    stats = await projections.get_job_stats(pool)
    assert after.by_type == {name: t.by_status for name, t in stats.by_type.items()}
    note = await trend.archive_note(pool)
    assert (note.runs, note.jobs, note.missing) == (1, 2, 0)

    await projections.rebuild(pool, db_dsn, ["job_buckets"])
    assert await rows(pool) == live


async def test_minute_rows_older_than_two_days_are_pruned_and_old_moments_read_hours(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    job, later = new_job_id(), new_job_id()
    await put(pool, job, T0 + timedelta(minutes=10), dispatched(job), started(), completed())
    await catch_up(pool, db_dsn)
    minutes = "SELECT count(*) FROM jobtrail.job_bucket_minutes"
    assert await pool.fetchval(minutes) == 3
    at = T0 + timedelta(minutes=10, seconds=1)  # the job started, not yet completed
    assert (await trend.counts_at(pool, at + timedelta(minutes=1))).precision == "minute"

    await put(pool, later, T0 + timedelta(days=3), dispatched(later))
    await catch_up(pool, db_dsn)

    assert await pool.fetchval(minutes) == 1, "only the newest event's minute is kept"
    old = await trend.counts_at(pool, T0 + timedelta(minutes=30))
    assert (old.precision, old.moment) == ("hour", T0)
    assert old.by_type == {}, "at 09:00, the hour before the job, nothing existed"
    next_hour = await trend.counts_at(pool, T0 + timedelta(hours=1, minutes=5))
    assert next_hour.by_type == {"cleanup-old-data": {"completed": 1}}
    live = await rows(pool)
    await projections.rebuild(pool, db_dsn, ["job_buckets"], batch_size=1)
    assert await rows(pool) == live


async def test_a_window_name_must_be_one_offered(pool: asyncpg.Pool) -> None:
    with pytest.raises(projections.InvalidFilterError) as caught:
        await trend.series(pool, "fortnight", T0)
    assert str(caught.value) == "window: 'fortnight' is not a window; use one of hour, day, week"


async def _check_script(dsn: str, steps: list[Any], rebuild_batch: int) -> None:
    pool = await jobstore.create_pool(dsn, min_size=1, max_size=4)
    try:
        await Script(pool, dsn).play(steps)
        await projections.ProjectionRunner(pool, dsn).run_until_caught_up()
        incremental = await rows(pool)
        now = await trend.counts_at(pool, datetime.now(UTC) + timedelta(minutes=1))
        stats = await projections.get_job_stats(pool)
        assert now.by_type == {name: t.by_status for name, t in stats.by_type.items()}
        await projections.rebuild(pool, dsn, ["job_buckets"], batch_size=rebuild_batch)
        assert await rows(pool) == incremental
    finally:
        await pool.close()


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=SCRIPT, rebuild_batch=st.sampled_from([3, 5000]))
def test_for_any_events_the_buckets_sum_to_the_views_counts_and_rebuild_alike(
    property_db: str, steps: list[Any], rebuild_batch: int
) -> None:
    """Any sequence of job events (archivings and batch sizes included): the transitions up
    to now sum to the views' counts, and a rebuild reaches the same rows."""
    asyncio.run(_check_script(property_db, steps, rebuild_batch))
