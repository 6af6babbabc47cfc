"""Rate and concurrency limits, carried to QStash as flow control and enforced there."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

import jobstore
import projections
from jobstore import job_events
from tests.host_support import Host, running_host


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn) as running:
        yield running


async def _all_done(host: Host, job_ids: list[str], within: float = 60) -> None:
    deadline = time.monotonic() + within
    for job_id in job_ids:
        await host.wait_status(job_id, "completed", within=max(1.0, deadline - time.monotonic()))


async def test_a_parallelism_limit_never_lets_more_attempts_run_at_once(host: Host) -> None:
    """200 jobs limited to 2 at a time, checked from the log's started/finished events."""
    limits = {"parallelism": 2, "flow_key": "{job_type}-limited"}
    job_ids = [
        await host.dispatcher.enqueue("test-job", {"sleep": 0.005}, None, limits)
        for _ in range(200)
    ]
    await _all_done(host, job_ids)

    moments: list[tuple[int, int]] = []  # (log position, +1 start / -1 end)
    for job_id in job_ids:
        for recorded in await host.ctx.store.read_stream(f"job-{job_id}"):
            if isinstance(recorded.event, job_events.JobStarted):
                moments.append((recorded.position, +1))
            elif isinstance(recorded.event, job_events.JobCompleted):
                moments.append((recorded.position, -1))
    running, most = 0, 0
    for _, step in sorted(moments):
        running += step
        most = max(most, running)
    assert most == 2  # the limit was reached, and never passed
    dispatched = (await host.events(job_ids[0]))[0]
    assert isinstance(dispatched, job_events.JobDispatched)
    assert dispatched.options.flow_control == jobstore.options.FlowControl(
        key="test-job-limited", parallelism=2
    )


async def test_a_rate_limit_spaces_deliveries_in_qstash_own_schedule(host: Host) -> None:
    limits = {"rate": 4, "period": "1s", "flow_key": "rated-{organization_id}"}
    job_ids = [
        await host.dispatcher.enqueue("test-job", {}, {"organization_id": 7}, limits)
        for _ in range(12)
    ]
    await _all_done(host, job_ids)

    assert host.qstash is not None
    delivered = sorted(
        event.time_ms
        for event in host.qstash.state.events.oldest_first()
        if event.state == "ACTIVE" and event.message.spec.flow_control is not None
    )
    assert len(delivered) == 12
    # QStash's rate is per period of the key: a period starts at the first delivery after
    # the previous one ended, and admits at most 4.
    periods: list[list[int]] = []
    for moment in delivered:
        if not periods or moment >= periods[-1][0] + 990:  # ms rounding of the log
            periods.append([moment])
        else:
            periods[-1].append(moment)
    assert [len(p) for p in periods] == [4, 4, 4], periods


async def test_limits_per_organization_keep_one_tenant_behind_its_own_key(host: Host) -> None:
    options = {"parallelism": 1, "flow_key": "{job_type}-org-{organization_id}"}
    first = await host.dispatcher.enqueue("test-job", {}, {"organization_id": 1}, options)
    second = await host.dispatcher.enqueue("test-job", {}, {"organization_id": 2}, options)
    keys = []
    for job_id in (first, second):
        dispatched = (await host.events(job_id))[0]
        assert isinstance(dispatched, job_events.JobDispatched)
        assert dispatched.options.flow_control is not None
        keys.append(dispatched.options.flow_control.key)
    assert keys == ["test-job-org-1", "test-job-org-2"]
    await _all_done(host, [first, second])


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"parallelism": 0}, "parallelism"),
        ({"rate": 5, "flow_key": "{secret}"}, "flow key '{secret}' names secret"),
        ({"timeout": "2h"}, "outside this type's bounds"),
    ],
)
async def test_bad_limits_are_refused_at_enqueue(
    host: Host, options: dict[str, object], says: str
) -> None:
    with pytest.raises(jobstore.JobValidationError) as refused:
        await host.dispatcher.enqueue("test-job", {}, None, options)
    assert says in str(refused.value.validation_errors)
    await asyncio.sleep(0)


async def test_a_replay_may_change_a_jobs_limits_and_timeout(host: Host) -> None:
    job_id = await host.dispatcher.enqueue(
        "test-job", {"fail_times": 9}, None, {"retries": 0, "parallelism": 3}
    )
    await host.wait_status(job_id, "failed")

    await host.dispatcher.replay_job(
        job_id, "calmer", payload={}, options={"parallelism": 1, "timeout": 0.5}
    )
    await host.wait_status(job_id, "completed")

    replay = [e for e in await host.events(job_id) if isinstance(e, job_events.JobDispatched)][-1]
    assert replay.options.flow_control is not None
    assert (replay.options.flow_control.parallelism, replay.options.timeout) == (1, 0.5)


async def test_stats_and_metrics_show_jobs_waiting_on_a_limit(db_dsn: str) -> None:
    """Jobs QStash holds back (here: a paused flow-control key) are counted per type."""
    async with running_host(db_dsn) as host:
        assert host.qstash is not None
        options = {"parallelism": 1, "flow_key": "held"}
        host.qstash.state.flow("held").paused = True
        job_ids = [await host.dispatcher.enqueue("test-job", {}, None, options) for _ in range(3)]
        plain = await host.dispatcher.enqueue("test-job", {"tag": "free"})
        await host.wait_status(plain, "completed")
        deadline = time.monotonic() + 15
        while True:  # the host's own projections catch up
            stats = await projections.get_job_stats(host.ctx.store.pool)
            per_type = stats.by_type.get("test-job")
            if per_type is not None and per_type.by_status.get("completed") == 1:
                break
            assert time.monotonic() < deadline, "the views did not catch up"
            await asyncio.sleep(0.05)
        pending = stats.by_type["test-job"].pending
        assert (pending.count, pending.waiting_on_limit) == (3, 3)
        assert pending.oldest_age_seconds is not None and pending.oldest_age_seconds >= 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(host.url + "/metrics") as response,
        ):
            text = await response.text()
        assert 'jobtrail_jobs_waiting_on_limit{job_type="test-job"} 3.0' in text
        assert 'jobtrail_jobs_pending{job_type="test-job"} 3.0' in text
        assert len(job_ids) == 3
