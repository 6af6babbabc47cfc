"""Migration 0018: the job_executions view gains the rest of a job's state (options, lease),
filled for the jobs it already holds as the fold of what it has applied would give."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import asyncpg

import jobstore
from jobstore import DispatchOptions, job_events, job_state, migrations
from projections import execution
from tests import pg
from tests.projection_support import completed, dispatched, failed, new_job_id, started

ADDS_STATE_COLUMNS = 18

INSERT_OLD_ROW = """
INSERT INTO jobtrail.job_executions (
    job_id, job_type, status, payload, metadata, dispatch, attempt, attempts, max_retries,
    cancel_requested, ever_completed, created_at, replay_count, source, version, position)
VALUES ($1, 'cleanup-old-data', 'pending', '{}', '{}', 1, 0, 0, 0, false, false, now(), 0,
        'api', $2, 1)
"""


async def test_migrating_fills_options_and_lease_from_the_events_each_row_has_applied(
    empty_dsn: str, tmp_path: Path
) -> None:
    folder = pg.migrations_before(tmp_path, ADDS_STATE_COLUMNS)
    await jobstore.migrate(empty_dsn, folder)
    replay = dispatched("", dispatch=2, source="replay", options={"retries": 4, "timeout": 99})
    histories: dict[str, list[jobstore.Event]] = {
        "running": [dispatched(""), started()],
        "completed": [dispatched(""), started(), completed()],
        "cancelled while running": [
            dispatched(""),
            started(),
            job_events.JobCancelled(dispatch=1),
        ],
        "replayed": [dispatched("", options={"retries": 1}), started(), failed(), replay],
    }
    applied = {name: len(events) for name, events in histories.items()}
    histories["view behind the log"] = histories["replayed"]
    applied["view behind the log"] = 3
    pool = await jobstore.create_pool(empty_dsn, min_size=1, max_size=2)
    try:
        store = jobstore.EventStore(pool)
        jobs = {name: new_job_id() for name in histories}
        for name, events in histories.items():
            job_id = jobs[name]
            first = events[0]
            assert isinstance(first, job_events.JobDispatched)
            own = [first.model_copy(update={"job_id": job_id}), *events[1:]]
            await store.append(job_state.stream_id(job_id), own)
            await pool.execute(INSERT_OLD_ROW, job_id, applied[name])

        shutil.copytree(migrations.migrations_dir(), folder, dirs_exist_ok=True)
        await jobstore.migrate(empty_dsn, folder)

        filled = {}
        for name, job_id in jobs.items():
            stream = await store.read_stream(job_state.stream_id(job_id))
            state = job_state.fold(stream[: applied[name]])
            assert state is not None
            row = await pool.fetchrow(
                "SELECT options, lease_until FROM jobtrail.job_executions WHERE job_id = $1",
                job_id,
            )
            assert row is not None
            options = DispatchOptions.model_validate(row["options"])
            assert (options, row["lease_until"]) == (state.options, state.lease_until), name
            filled[name] = (options.retries, row["lease_until"] is not None)
    finally:
        await pool.close()
    assert filled == {
        "running": (2, True),
        "completed": (2, False),
        "cancelled while running": (2, True),
        "replayed": (4, False),
        "view behind the log": (1, False),
    }


async def test_the_view_has_a_column_for_each_field_of_a_jobs_state(pool: asyncpg.Pool) -> None:
    columns = await pool.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'jobtrail' AND table_name = 'job_executions'"
    )
    assert sorted(r["column_name"] for r in columns) == sorted(execution.COLUMNS)
    state_fields = {f.name for f in dataclasses.fields(jobstore.JobState)}
    assert state_fields | {"max_retries"} == set(execution.COLUMNS)
