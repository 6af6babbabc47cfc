"""POST /api/v1/jobs on a real host: what cannot be called or published is a 400, never a 500.

The host runs with the production address policy (public addresses, ports 80 and 443).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from tests.host_support import Host, running_host

TOKEN = "enqueue-limit-token-0123456789abcdef"
HOOK = {"url": "https://hooks.example.com/in", "event": "order.paid"}


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    # running_host allows private targets and any port; the variables' own names win.
    strict = {"JOBTRAIL_WEBHOOK_ALLOW_PRIVATE": False, "JOBTRAIL_WEBHOOK_PORTS": "80,443"}
    async with running_host(db_dsn, relay=False, api_token=TOKEN, **strict) as running:
        yield running


async def post_job(host: Host, body: bytes | dict[str, Any]) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{host.url}/api/v1/jobs", data=raw, headers=headers) as response,
    ):
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"callback": "http://169.254.169.254/latest/meta-data/"}, "link-local"),
        ({"failure_callback": "http://10.0.0.7/failed"}, "private address"),
        ({"callback": "https://hooks.example.com:25/"}, "port 25 is not allowed"),
    ],
)
async def test_callback_outside_the_policy_is_a_400_naming_the_option(
    host: Host, options: dict[str, str], expected: str
) -> None:
    status, body = await post_job(
        host, {"type": "process-webhook", "payload": HOOK, "options": options}
    )

    assert status == 400, body
    assert expected in orjson.dumps(body).decode()
    assert next(iter(options)) in orjson.dumps(body).decode()


async def test_webhook_to_port_25_is_a_400(host: Host) -> None:
    payload = {**HOOK, "url": "http://198.51.100.7:25/"}

    status, body = await post_job(host, {"type": "process-webhook", "payload": payload})

    assert status == 400, body
    assert "port 25 is not allowed" in orjson.dumps(body).decode()


@pytest.mark.parametrize("depth", [33, 1000])
async def test_over_deep_payload_is_a_400_naming_the_limit(host: Host, depth: int) -> None:
    lists = b"[" * (depth - 2) + b"]" * (depth - 2)
    payload = orjson.dumps(HOOK)[:-1] + b',"body":{"a":' + lists + b"}}"

    status, body = await post_job(host, b'{"type":"process-webhook","payload":' + payload + b"}")

    assert status == 400, body
    assert "32 levels deep" in orjson.dumps(body).decode()


async def test_hundred_thousand_deep_body_is_a_clean_400(host: Host) -> None:
    raw = b'{"type":"process-webhook","payload":' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    status, body = await post_job(host, raw)

    assert status == 400, body


async def written(db_dsn: str) -> tuple[int, int]:
    """How many job events and data keys the database holds."""
    conn = await asyncpg.connect(db_dsn)
    try:
        events = await conn.fetchval(
            "SELECT count(*) FROM jobtrail.events WHERE stream_id LIKE 'job-%'"
        )
        keys = await conn.fetchval("SELECT count(*) FROM jobtrail.data_keys")
    finally:
        await conn.close()
    return int(events), int(keys)


@pytest.mark.parametrize(
    "payload",
    [
        # 200 KiB of non-ASCII text in a field published as is (not a personal one, which
        # travels sealed as ASCII): 1.2 MB as the SDK escapes it.
        pytest.param({**HOOK, "headers": {"X-Note": "é" * (200 * 1024)}}, id="escaped"),
        # 955 KB as given, under the limit; 1.06 MB as published, the personal body sealed
        # (a third larger in base64): only a check of the sealed message refuses it.
        pytest.param(
            {**HOOK, "body": {"text": "x" * (300 * 1024)}, "headers": {"X-Note": "é" * 108_000}},
            id="over-once-sealed",
        ),
    ],
)
async def test_job_whose_qstash_message_would_pass_1_mib_is_a_400(
    host: Host, db_dsn: str, payload: dict[str, Any]
) -> None:
    before = await written(db_dsn)

    status, body = await post_job(host, {"type": "process-webhook", "payload": payload})

    assert status == 400, body
    assert "1048576 bytes" in orjson.dumps(body).decode()
    assert await written(db_dsn) == before


async def test_a_public_callback_on_an_allowed_port_is_accepted(host: Host) -> None:
    job = {
        "type": "process-webhook",
        "payload": HOOK,
        "options": {"callback": "https://hooks.example.com/done"},
    }

    status, body = await post_job(host, job)

    assert status == 201, body
