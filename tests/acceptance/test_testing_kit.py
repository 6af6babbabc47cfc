"""jobtrail's pytest plugin, used as an application uses it: its fixtures, eager runs through
the host's attempt path, and the documented example run in a project of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

import jobstore
from workers.testing import JobTrailKit

ROOT = Path(__file__).resolve().parents[2]
CALLS: list[tuple[str, int, int]] = []


class Flaky(pydantic.BaseModel):
    fail_times: int


async def flaky(payload: Flaky, job: jobstore.BaseJob) -> dict[str, int]:
    CALLS.append((job.job_id, job.dispatch, job.attempt))
    if job.attempt <= payload.fail_times:
        raise RuntimeError(f"attempt {job.attempt} fails on purpose")
    return {"attempt": job.attempt}


@pytest.fixture
def jobtrail_registry(jobtrail_settings: jobstore.Settings) -> jobstore.JobRegistry:
    """The application's job types: here one that fails a given number of times."""
    reg = jobstore.default_registry()
    config = jobstore.JobConfig(type="flaky", endpoint="/jobs/flaky", retries=2, timeout=10)
    reg.register(config, Flaky, flaky)
    return reg


async def test_eager_enqueue_records_a_real_attempts_events(jobtrail: JobTrailKit) -> None:
    job_id = await jobtrail.dispatcher.enqueue("flaky", {"fail_times": 0})
    record = await jobtrail.assert_completed(job_id)
    assert record.result == {"attempt": 1}
    await jobtrail.assert_history(job_id, "job.dispatched", "job.started", "job.completed")
    started = (await jobtrail.events(job_id))[1].event
    assert isinstance(started, jobstore.job_events.JobStarted)
    assert started.lease_until is not None, "the host's attempt path took a lease"


async def test_failed_attempts_are_retried_at_once_until_one_succeeds(
    jobtrail: JobTrailKit,
) -> None:
    job_id = await jobtrail.dispatcher.enqueue("flaky", {"fail_times": 2})
    record = await jobtrail.assert_completed(job_id)
    assert record.attempts == 3
    await jobtrail.assert_history(
        job_id,
        *("job.dispatched", "job.started", "job.attempt_failed"),
        *("job.started", "job.attempt_failed", "job.started", "job.completed"),
    )
    assert [call for call in CALLS if call[0] == job_id] == [(job_id, 1, n) for n in (1, 2, 3)]


async def test_spent_retries_fail_the_job_and_a_replay_runs_it_again(
    jobtrail: JobTrailKit,
) -> None:
    job_id = await jobtrail.dispatcher.enqueue("flaky", {"fail_times": 3})
    await jobtrail.assert_failed(job_id, error_contains="attempt 3 fails on purpose")
    assert (await jobtrail.event_types(job_id))[-2:] == ["job.attempt_failed", "job.failed"]
    await jobtrail.dispatcher.replay_job(job_id, "fixed", payload={"fail_times": 0})
    record = await jobtrail.assert_completed(job_id)
    assert record.dispatch == 2


async def test_every_way_of_recording_a_job_runs_it_eagerly(jobtrail: JobTrailKit) -> None:
    record = await jobtrail.dispatcher.create_job_execution(
        {"jobType": "flaky", "payload": {"fail_times": 0}}
    )
    assert record.status == "completed", "the seed's createJobExecution ran the job"
    many = await jobtrail.dispatcher.enqueue_many(
        [jobstore.JobRequest("flaky", {"fail_times": n}, None, None) for n in (0, 1)]
    )
    assert [(await jobtrail.execution(job_id)).attempts for job_id in many] == [1, 2]
    enqueued = await jobtrail.dispatcher.enqueue_with_position("flaky", {"fail_times": 0})
    await jobtrail.assert_completed(enqueued.job_id)


async def test_without_eager_mode_jobs_wait_until_run(jobtrail: JobTrailKit) -> None:
    jobtrail.eager = False
    job_id = await jobtrail.dispatcher.enqueue("flaky", {"fail_times": 0})
    assert (await jobtrail.execution(job_id)).status == "pending"
    await jobtrail.assert_history(job_id, "job.dispatched")
    assert (await jobtrail.run(job_id)).status == "completed"


async def test_history_helpers_say_what_differs(jobtrail: JobTrailKit) -> None:
    job_id = await jobtrail.dispatcher.enqueue("flaky", {"fail_times": 0})
    with pytest.raises(AssertionError, match=r"history is \['job.dispatched'"):
        await jobtrail.assert_history(job_id, "job.dispatched")
    with pytest.raises(AssertionError, match="is completed, not failed"):
        await jobtrail.assert_failed(job_id)


async def test_each_test_gets_a_database_of_its_own(jobtrail: JobTrailKit) -> None:
    count = await jobtrail.pool.fetchval("SELECT count(*) FROM jobtrail.events")
    assert count == 0
    assert jobtrail.settings.qstash_url is not None
    assert jobtrail.settings.qstash_url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_the_documented_example_passes_in_a_project_of_its_own(
    tmp_path: Path, server_dsn: str
) -> None:
    """docs/examples, copied outside this repository (no conftest): only the plugin, loaded
    through its pytest11 entry point, provides the fixtures."""
    for name in ("invoices.py", "test_invoices.py"):
        shutil.copy(ROOT / "docs" / "examples" / name, tmp_path / name)
    env = {**os.environ, "DATABASE_URL": server_dsn, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_invoices.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout
