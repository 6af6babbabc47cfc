"""Processes die: ``jobtrail serve`` killed mid-handler, qstash_local restarted empty."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import jobstore
from jobstore import job_events
from tests.processes import serve_stack
from tests.serve_app import registry
from workers import Sweeper, SweeperConfig

pytestmark = pytest.mark.slow


@pytest.fixture
def dispatcher(pool: object) -> jobstore.Dispatcher:
    return jobstore.Dispatcher(jobstore.EventStore(pool), registry(None))  # type: ignore[arg-type]


async def _wait_for(predicate: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_host_killed_mid_handler_completes_the_job_exactly_once_after_restart(
    db_dsn: str, dispatcher: jobstore.Dispatcher, tmp_path: Path
) -> None:
    marker = tmp_path / "attempts.txt"
    async with serve_stack(db_dsn, tmp_path, JOBTRAIL_LEASE_GRACE_SECONDS="0.2") as stack:
        serve = stack.serve
        job_id = await dispatcher.enqueue("slow-job", {"seconds": 0.8, "marker": str(marker)})
        await _wait_for(lambda: _started(marker), 15, "the handler to start")
        serve.kill()
        serve.start()
        await stack.wait_host()

        async def completed() -> bool:
            execution = await dispatcher.get_job_execution_by_job_id(job_id)
            return execution is not None and execution.status == "completed"

        await _wait_for(completed, 60, f"the job to complete; serve log:\n{serve.output()}")
        assert serve.terminate() == 0, "SIGTERM is a clean exit"

    events = [r.event for r in await dispatcher.store.read_stream(f"job-{job_id}")]
    kinds = [e.type_name for e in events]
    assert kinds.count("job.completed") == 1
    abandoned = [e for e in events if isinstance(e, job_events.JobAttemptFailed) and e.abandoned]
    assert [a.attempt for a in abandoned] == [1], kinds
    assert marker.read_text().splitlines()[0] == "1:1"


async def _started(marker: Path) -> bool:
    return await asyncio.to_thread(lambda: marker.exists() and marker.read_text().strip() != "")


async def test_qstash_restarted_empty_every_job_and_schedule_is_brought_back_exactly_once(
    db_dsn: str, dispatcher: jobstore.Dispatcher, tmp_path: Path
) -> None:
    """QStash loses every message and schedule: the sweeper brings each delayed job back once,
    still held to its time (none runs early), the schedule is re-created, and the stack
    delivers again (a job enqueued after the restart runs)."""
    from qstash import AsyncQStash

    marker = tmp_path / "runs.txt"
    pool = dispatcher.store.pool

    async def published(dispatch: int) -> dict[str, str]:
        rows = await pool.fetch(
            "SELECT job_id, message_id FROM jobtrail.relay_messages WHERE dispatch = $1",
            dispatch,
        )
        return {str(r["job_id"]): str(r["message_id"]) for r in rows if r["message_id"]}

    async with serve_stack(
        db_dsn,
        tmp_path,
        JOBTRAIL_SWEEP_INTERVAL="0.5",
        JOBTRAIL_SWEEP_MIN_AGE="0.5",
        JOBTRAIL_RECONCILE_INTERVAL="1",
    ) as stack:
        client = AsyncQStash(stack.env["QSTASH_TOKEN"], base_url=stack.qstash_url, retry=False)
        qstash = stack.qstash
        try:
            schedule_id = await dispatcher.schedule(
                "cleanup-old-data", "0 2 * * *", {"retention": 30}
            )
            job_ids = [
                await dispatcher.enqueue(
                    "slow-job", {"seconds": 0, "marker": str(marker)}, None, {"delay": 3600}
                )
                for _ in range(5)
            ]

            async def all_published() -> bool:
                return sorted(await published(1)) == sorted(job_ids)

            await _wait_for(all_published, 60, "the relay to publish every job")
            assert (await client.schedule.get(schedule_id)).cron == "0 2 * * *"
            lost = {
                job_id: (await client.message.get(message_id)).not_before
                for job_id, message_id in (await published(1)).items()
            }

            qstash.kill()
            qstash.start()
            await stack.wait_qstash()

            async def all_recovered() -> bool:
                return sorted(await published(2)) == sorted(job_ids)

            await _wait_for(
                all_recovered, 60, f"every job to be recovered; serve log:\n{stack.serve.output()}"
            )
            for job_id, message_id in (await published(2)).items():
                held = await client.message.get(message_id)
                assert held.not_before == lost[job_id], "QStash holds it to its original time"

            async def schedule_back() -> bool:
                listed = [s.schedule_id for s in await client.schedule.list()]
                return listed.count(schedule_id) == 1

            await _wait_for(schedule_back, 60, "the schedule to be re-created")

            fresh = await dispatcher.enqueue("slow-job", {"seconds": 0, "marker": str(marker)})

            async def fresh_completed() -> bool:
                execution = await dispatcher.get_job_execution_by_job_id(fresh)
                return execution is not None and execution.status == "completed"

            await _wait_for(fresh_completed, 60, "a job enqueued after the restart to run")
            # A sweep now (the host's own keep running) finds every recovered message in
            # QStash: nothing is brought back a second time.
            ctx = SimpleNamespace(store=dispatcher.store, qstash=client)
            again = Sweeper(ctx, SweeperConfig(min_age=0))  # type: ignore[arg-type]
            assert await again.sweep_once() == 0, "a recovered message is recovered again"
        finally:
            await client.http._client.aclose()

    for job_id in job_ids:
        events = [r.event for r in await dispatcher.store.read_stream(f"job-{job_id}")]
        dispatches = [e for e in events if isinstance(e, job_events.JobDispatched)]
        assert [e.source for e in dispatches] == ["api", "recovery"], "brought back once"
        original, recovery = dispatches
        assert original.options.not_before is not None
        assert recovery.options.not_before == original.options.not_before
        assert lost[job_id] == math.ceil(original.options.not_before) * 1000, "never early"
        assert [e.type_name for e in events[2:]] == [], "nothing ran before its time"
        execution = await dispatcher.get_job_execution_by_job_id(job_id)
        assert execution is not None and execution.status == "pending"
    assert marker.read_text().splitlines() == ["1:1"], "only the job enqueued after the restart ran"


async def test_sigterm_lets_the_running_handler_finish_then_exits_zero(
    db_dsn: str, dispatcher: jobstore.Dispatcher, tmp_path: Path
) -> None:
    marker = tmp_path / "attempts.txt"
    async with serve_stack(db_dsn, tmp_path, scale="1", serve_args=("--grace", "10")) as stack:
        serve = stack.serve
        job_id = await dispatcher.enqueue("slow-job", {"seconds": 1.5, "marker": str(marker)})
        await _wait_for(lambda: _started(marker), 15, "the handler to start")

        exit_code = await asyncio.to_thread(serve.terminate, 20)

        assert exit_code == 0, serve.output()[-2000:]
        assert "stopped" in serve.output()
        (line,) = [
            json.loads(x) for x in serve.output().splitlines() if '"slow handler running"' in x
        ]
        assert (line["job_id"], line["job_type"], line["attempt"]) == (job_id, "slow-job", 1)
        assert line["message_id"].startswith("msg_"), "bound on every line a handler logs"
    state = await dispatcher.load(job_id)
    assert state is not None
    assert state.status.value == "completed", "the in-flight handler finished and was recorded"
    assert state.attempts == 1
