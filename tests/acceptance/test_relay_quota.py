"""QStash's own limits (issue 15, point 6): a 429 to the relay's publish is waited out.

qstash_local answers 429 the way QStash does (burst rate limit, message quota; the
official SDK turns them into RateLimitExceededError / DailyMessageLimitExceededError with
the reset time).  The relay retries a throttled publish no sooner than that reset, so a
throttle costs one refused request, not a hot loop; nothing is dropped; /metrics and
``jobtrail relay status`` show it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import pytest
from qstash import AsyncQStash
from qstash.errors import DailyMessageLimitExceededError, RateLimitExceededError

import qstash_local
from jobstore.relay import throttled_for
from tests.cli_support import jobtrail
from tests.host_support import TEST_CONFIG, running_host

THROTTLE_SECONDS = 3.0


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.1)


async def test_qstash_local_answers_429_as_qstash_does_through_the_sdk() -> None:
    config = qstash_local.Config(burst_limit=1, burst_window_s=3600, message_quota=3)
    async with qstash_local.serve(config, port=0) as server:
        client = AsyncQStash(config.token, base_url=server.url, retry=False)
        try:
            await client.message.publish_json(url="http://127.0.0.1:9/a", body={})
            with pytest.raises(RateLimitExceededError) as burst:
                await client.message.publish_json(url="http://127.0.0.1:9/b", body={})
            assert (burst.value.limit, burst.value.remaining) == ("1", "0")
            wait = throttled_for(burst.value)
            assert wait is not None and 3000 < wait <= 3601  # the reset is a whole second

            server.limiter.burst.limit = 0  # no burst limit: the quota of 3 messages rules
            items = [{"url": f"http://127.0.0.1:9/{i}", "body": {}} for i in range(3)]
            with pytest.raises(DailyMessageLimitExceededError) as quota:
                await client.message.batch_json(items)
            assert (quota.value.limit, quota.value.remaining) == ("3", "2")
            assert throttled_for(quota.value) is not None
        finally:
            await client.http._client.aclose()
        assert len(server.state.messages) == 1  # a refused request publishes nothing
        assert server.limiter.refused == 2


async def test_a_throttled_relay_waits_for_the_reset_and_drops_nothing(db_dsn: str) -> None:
    async with (
        qstash_local.serve(TEST_CONFIG, port=0) as qstash,
        running_host(db_dsn, qstash_url=qstash.url) as host,
    ):
        qstash.limiter.throttle(THROTTLE_SECONDS)
        job_ids = [await host.enqueue(tag=f"job {i}") for i in range(5)]
        for job_id in job_ids:
            await host.wait_status(job_id, "completed", within=60)
        # Retried no sooner than the reset QStash gave: one refusal, not a hot loop
        # (the relay's own backoff here tops out at 0.5 s: ~8 tries in the throttle).
        assert 1 <= qstash.limiter.refused <= 2, qstash.limiter.refused
        assert len(host.handler.calls) == 5  # every job ran, once
        assert len(qstash.state.messages) == 5

        async with (
            aiohttp.ClientSession() as session,
            session.get(host.url + "/metrics") as response,
        ):
            text = await response.text()
        found = re.search(r"^jobtrail_qstash_throttled_total (\S+)$", text, re.MULTILINE)
        assert found and float(found[1]) == qstash.limiter.refused, text

        async def reported() -> bool:
            result = await jobtrail(db_dsn, "relay", "status", "--json")
            hosts = orjson.loads(result.out)["hosts"]
            return result.code == 0 and hosts[0]["detail"]["qstash_throttled"] >= 1

        await until(reported, "jobtrail relay status shows the throttling")
        result = await jobtrail(db_dsn, "relay", "status")
        assert "1 time(s)" in result.out or "2 time(s)" in result.out, result.out
