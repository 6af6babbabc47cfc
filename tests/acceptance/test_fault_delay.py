"""A delayed job keeps its time when QStash loses its message: the sweeper's recovery (and a
replay) keeps the delay that is left, and QStash is asked to deliver no earlier."""

from __future__ import annotations

import asyncio
import math
import time

import qstash_local
from jobstore import job_events
from tests.host_support import TEST_CONFIG, Host, free_port, running_host
from workers import Sweeper, SweeperConfig


async def _message_of(host: Host, job_id: str, dispatch: int) -> str:
    deadline = time.monotonic() + 15
    while True:
        message_id = await host.ctx.store.pool.fetchval(
            "SELECT message_id FROM jobtrail.relay_messages WHERE job_id = $1 AND dispatch = $2",
            job_id,
            dispatch,
        )
        if message_id:
            return str(message_id)
        assert time.monotonic() < deadline, f"dispatch {dispatch} was never published"
        await asyncio.sleep(0.02)


async def test_a_delayed_job_whose_message_qstash_lost_is_recovered_with_its_delay(
    db_dsn: str,
) -> None:
    port = free_port()
    async with running_host(db_dsn, qstash_url=f"http://127.0.0.1:{port}") as host:
        sweeper = Sweeper(host.ctx, SweeperConfig(min_age=0))
        async with qstash_local.serve(TEST_CONFIG, host="127.0.0.1", port=port) as first:
            job_id = await host.dispatcher.enqueue(
                "test-job", {"tag": "later"}, None, {"delay": 3600}
            )
            lost = first.state.messages[await _message_of(host, job_id, 1)]

        # qstash_local restarts empty: the delayed message is gone.
        async with qstash_local.serve(TEST_CONFIG, host="127.0.0.1", port=port) as second:
            assert await sweeper.sweep_once() == 1
            message = second.state.messages[await _message_of(host, job_id, 2)]

            assert message.not_before_ms == lost.not_before_ms, "QStash holds it to its time"
            assert message.state == "CREATED"
            events = await host.events(job_id)
            original, recovery = events
            assert isinstance(original, job_events.JobDispatched)
            assert isinstance(recovery, job_events.JobDispatched)
            assert recovery.source == "recovery"
            assert recovery.options.not_before == original.options.not_before
            assert original.options.not_before is not None
            assert (
                lost.not_before_ms == math.ceil(original.options.not_before) * 1000
            )  # never early
            assert await sweeper.sweep_once() == 0, "QStash has the recovered message"
            assert host.handler.calls == []
            execution = await host.dispatcher.get_job_execution_by_job_id(job_id)
            assert execution is not None and execution.status == "pending"


async def test_a_replayed_job_keeps_the_delay_that_is_left(db_dsn: str) -> None:
    """Cancelled before its delayed start, then replayed: it still waits for its time."""
    async with running_host(db_dsn) as host:
        assert host.qstash is not None
        job_id = await host.dispatcher.enqueue("test-job", {"tag": "later"}, None, {"delay": 3600})
        await _message_of(host, job_id, 1)
        await host.dispatcher.cancel(job_id, "not yet")
        await host.dispatcher.replay_job(job_id, "after all")

        message = host.qstash.state.messages[await _message_of(host, job_id, 2)]

        original, *_, replay = await host.events(job_id)
        assert isinstance(original, job_events.JobDispatched)
        assert isinstance(replay, job_events.JobDispatched)
        assert replay.source == "replay"
        assert original.options.not_before is not None
        assert replay.options.not_before == original.options.not_before
        assert message.not_before_ms == math.ceil(original.options.not_before) * 1000
        assert host.handler.calls == []
