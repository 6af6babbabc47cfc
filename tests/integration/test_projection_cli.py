"""``jobtrail projections status|rebuild`` against a real database."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import jobstore
from projections import ProjectionFailed, ProjectionRunner
from tests.projection_support import append, completed, dispatched, new_job_id, started
from workers.cli import projections as projections_cli

# The group is registered on an app of its own here, as workers/cli/__init__.py will.
APP = typer.Typer()
projections_cli.register(APP)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def json_of(stdout: str) -> Any:
    """The JSON document a command printed (log lines may precede it, as tests leave
    structlog unconfigured; the CLI's main sends them to stderr)."""
    return json.loads(stdout[stdout.index("{\n") :])


async def run(dsn: str, *args: str) -> Result:
    """Run the command in a thread (it runs its own event loop), as the CLI would."""

    def invoke() -> Result:
        runner = CliRunner()
        env = {"DATABASE_URL": dsn, "COLUMNS": "200"}
        outcome = runner.invoke(APP, ["projections", *args], env=env)
        return Result(outcome.exit_code, outcome.stdout, outcome.stderr)

    return await asyncio.to_thread(invoke)


async def test_status_shows_lag_then_rebuild_catches_up(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    job = new_job_id()
    head = await append(store, job, dispatched(job), started(), completed())

    before = await run(db_dsn, "status", "--json")
    assert before.returncode == 0, before.stderr
    lags = {p["name"]: (p["position"], p["lag"]) for p in json_of(before.stdout)["projections"]}
    assert lags == {
        "job_attempts": (0, head),
        "job_buckets": (0, head),
        "job_executions": (0, head),
    }
    assert set(json_of(before.stdout)["reader_lag"]) >= {"held_back_events", "held_back_seconds"}

    rebuilt = await run(db_dsn, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"3 events up to position {head}" in rebuilt.stdout

    after = await run(db_dsn, "status")
    assert after.returncode == 0 and "job_executions" in after.stdout
    one = await run(db_dsn, "rebuild", "job_attempts", "--json")
    assert json_of(one.stdout)["projections"] == ["job_attempts"]


async def test_a_stopped_projection_shows_its_error_and_exits_3(
    store: jobstore.EventStore, db_dsn: str
) -> None:
    bad = new_job_id()
    position = await append(store, bad, started())
    rebuilt = await run(db_dsn, "rebuild", "job_executions")
    assert rebuilt.returncode == 1
    assert f"stopped at position {position} (job.started" in rebuilt.stderr

    with pytest.raises(ProjectionFailed):
        await ProjectionRunner(store.pool, db_dsn).run_until_caught_up()
    status = await run(db_dsn, "status", "--json")
    assert status.returncode == 3
    error = {p["name"]: p["error"] for p in json_of(status.stdout)["projections"]}
    # Both folds of a job stop on it (the first to stop ends the run)
    assert {e["position"] for e in error.values() if e} == {position}
    assert error["job_attempts"] is None
    unknown = await run(db_dsn, "rebuild", "nope")
    assert unknown.returncode == 1 and "no projection named 'nope'" in unknown.stderr
