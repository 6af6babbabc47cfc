"""The sweeper asks QStash, not the clock: lost messages are recovered, failed ones fail."""

from __future__ import annotations

import asyncio

import qstash_local
from tests.host_support import TEST_CONFIG, Host, free_port, running_host
from workers import Sweeper, SweeperConfig
from workers.sweeper import qstash_state


async def _message_of(host: Host, job_id: str) -> str | None:
    for _ in range(250):
        message_id = await host.ctx.store.pool.fetchval(
            "SELECT message_id FROM jobtrail.relay_messages WHERE job_id = $1", job_id
        )
        if message_id:
            return str(message_id)
        await asyncio.sleep(0.02)
    return None


async def test_message_lost_by_qstash_is_recovered_and_completes_once(db_dsn: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with running_host(db_dsn, qstash_url=url) as host:
        sweeper = Sweeper(host.ctx, SweeperConfig(min_age=0))
        async with qstash_local.serve(TEST_CONFIG, host="127.0.0.1", port=port):
            host.ctx.accepting = False  # QStash keeps the message, retrying after a 503
            job_id = await host.dispatcher.enqueue("test-job", {"tag": "lost"})
            message_id = await _message_of(host, job_id)
            assert message_id is not None
            assert await qstash_state(host.ctx.qstash, message_id) == "pending"
            assert await sweeper.sweep_once() == 0, "QStash still has it: the sweeper waits"

        # qstash_local restarts: its in-memory state, and the retrying message, are gone.
        async with qstash_local.serve(TEST_CONFIG, host="127.0.0.1", port=port):
            host.ctx.accepting = True
            assert await qstash_state(host.ctx.qstash, message_id) == "unknown"
            assert await sweeper.sweep_once() == 1
            execution = await host.wait_status(job_id, "completed")
            assert await sweeper.sweep_once() == 0

        types = await host.types(job_id)
        assert types == ["job.dispatched", "job.dispatched", "job.started", "job.completed"]
        recovery = (await host.events(job_id))[1]
        assert recovery.source == "recovery"  # type: ignore[attr-defined]
        assert "no record" in (recovery.reason or "")  # type: ignore[attr-defined]
        assert [c.dispatch for c in host.handler.calls] == [2]
        assert execution.dispatch == 2


async def test_qstash_state_reports_a_dead_lettered_message_as_failed(db_dsn: str) -> None:
    async with running_host(db_dsn, relay=False) as host:
        assert host.qstash is not None
        client = host.ctx.qstash
        result = await client.message.publish_json(
            url=host.url + "/healthz-not-a-post", body={}, retries=0
        )
        for _ in range(250):
            if await qstash_state(client, result.message_id) == "failed":
                break
            await asyncio.sleep(0.02)
        assert await qstash_state(client, result.message_id) == "failed"


async def test_a_stuck_scheduled_run_whose_message_qstash_lost_is_recovered(
    db_dsn: str,
) -> None:
    import time
    import uuid

    import projections
    from jobstore import job_events

    async with running_host(db_dsn) as host:
        job_id = str(uuid.uuid4())
        await host.ctx.store.append(
            f"job-{job_id}",
            [
                job_events.JobDispatched(
                    job_id=job_id,
                    dispatch=1,
                    job_type="test-job",
                    payload={"tag": "nightly"},
                    metadata={"schedule_id": "jts_x"},
                    options={"timeout": 1.0, "retries": 1, "endpoint": "/jobs/test"},
                    source="schedule",
                ),
                job_events.JobStarted(
                    dispatch=1,
                    attempt=1,
                    message_id="msg_lost_forever",
                    lease_until=time.time() - 1,
                ),
            ],
            "no_stream",
        )
        await projections.wait_for_position(
            host.ctx.store.pool, await host.ctx.store.last_position(), timeout=10
        )

        assert await Sweeper(host.ctx, SweeperConfig(min_age=0)).sweep_once() == 1
        await host.wait_status(job_id, "completed")
        types = await host.types(job_id)

    assert types == [
        "job.dispatched",
        "job.started",
        "job.attempt_failed",
        "job.dispatched",
        "job.started",
        "job.completed",
    ]
    assert [c.dispatch for c in host.handler.calls] == [2]
