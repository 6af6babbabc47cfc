"""Schedules through the official SDK, fired by qstash_local's scheduler on an injected clock."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import AsyncIterator

import pytest
from qstash.errors import QStashError

from tests.qstash_support import FAST, FakeClock, Harness, eventually, running

START = datetime.datetime(2030, 1, 1, 0, 0, 30, tzinfo=datetime.UTC).timestamp()


@pytest.fixture
async def clocked() -> AsyncIterator[tuple[Harness, FakeClock]]:
    """A harness whose scheduler reads a clock the test moves by hand."""
    clock = FakeClock(START)
    async with running(dataclasses.replace(FAST, clock=clock)) as h:
        yield h, clock


async def test_schedule_fires_at_its_cron_time_with_its_schedule_id(
    clocked: tuple[Harness, FakeClock],
) -> None:
    h, clock = clocked
    sid = await h.client.schedule.create_json(
        destination=h.sink.url("/tick"), cron="* * * * *", body={"run": True}, headers={"X-A": "b"}
    )
    schedule = await h.client.schedule.get(sid)
    assert schedule.next_schedule_time == int(START + 30) * 1000
    assert h.sink.at("/tick") == []
    clock.now = START + 30
    [delivery] = await eventually(lambda: h.sink.at("/tick"), what="scheduled run")
    assert delivery.headers["Upstash-Schedule-Id"] == sid
    assert delivery.headers["X-A"] == "b"
    assert json.loads(delivery.body) == {"run": True}
    message_id = delivery.headers["Upstash-Message-Id"]
    assert (await h.client.message.get(message_id)).schedule_id == sid
    after = await h.client.schedule.get(sid)
    assert after.last_schedule_time == int(START + 30) * 1000
    assert after.next_schedule_time == int(START + 90) * 1000


async def test_paused_schedule_does_not_fire_until_resumed(
    clocked: tuple[Harness, FakeClock],
) -> None:
    h, clock = clocked
    sid = await h.client.schedule.create(destination=h.sink.url("/p"), cron="* * * * *")
    await h.client.schedule.pause(sid)
    assert (await h.client.schedule.get(sid)).paused is True
    clock.now = START + 30
    await h.client.schedule.pause(sid)  # idempotent
    assert h.state.schedules[sid].paused
    clock.now = START + 95
    await h.client.schedule.resume(sid)
    assert h.sink.at("/p") == []
    clock.now = START + 150
    await eventually(lambda: h.sink.at("/p"), what="run after resume")


async def test_custom_schedule_id_is_an_upsert(clocked: tuple[Harness, FakeClock]) -> None:
    h, _ = clocked
    first = await h.client.schedule.create(
        destination=h.sink.url("/a"), cron="0 * * * *", schedule_id="nightly-report"
    )
    second = await h.client.schedule.create(
        destination=h.sink.url("/b"), cron="30 4 * * *", schedule_id="nightly-report", retries=1
    )
    assert first == second == "nightly-report"
    [schedule] = await h.client.schedule.list()
    assert (schedule.destination, schedule.cron, schedule.retries) == (
        h.sink.url("/b"),
        "30 4 * * *",
        1,
    )


async def test_cron_tz_prefix_evaluates_the_cron_in_that_zone(
    clocked: tuple[Harness, FakeClock],
) -> None:
    h, _ = clocked
    sid = await h.client.schedule.create(
        destination=h.sink.url("/ny"), cron="CRON_TZ=America/New_York 0 4 * * *"
    )
    schedule = await h.client.schedule.get(sid)
    assert schedule.cron == "CRON_TZ=America/New_York 0 4 * * *"
    expected = datetime.datetime(2030, 1, 1, 9, 0, tzinfo=datetime.UTC)  # 04:00 EST
    assert schedule.next_schedule_time == int(expected.timestamp()) * 1000


async def test_deleted_schedule_is_gone_and_never_fires(clocked: tuple[Harness, FakeClock]) -> None:
    h, clock = clocked
    sid = await h.client.schedule.create(destination=h.sink.url("/gone"), cron="* * * * *")
    await h.client.schedule.delete(sid)
    with pytest.raises(QStashError, match="404"):
        await h.client.schedule.get(sid)
    assert await h.client.schedule.list() == []
    await h.client.schedule.create(destination=h.sink.url("/kept"), cron="* * * * *")
    clock.now = START + 30
    await eventually(lambda: h.sink.at("/kept"), what="the schedule that was kept")
    assert h.sink.at("/gone") == []
