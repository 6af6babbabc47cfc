"""Personal data through the API: opened for admin tokens, masked for others; erasure (admin)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.host_support import Host, running_host

ADMIN, READER = "admin-" + uuid.uuid4().hex, "reader-" + uuid.uuid4().hex
USER = 515


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    tokens = f"dpo:admin:{ADMIN},dash:read:{READER}"
    async with running_host(db_dsn, api_tokens=tokens, smtp_port=1) as running:
        yield running


async def _call(
    host: Host, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{host.url}/api/v1{path}", json=body, headers=headers) as answer,
    ):
        text = await answer.text()
        return answer.status, await answer.json(), text


async def _failed_email(host: Host, address: str) -> str:
    """A send-email job of USER to ``address``, failed (no SMTP server on port 1)."""
    job_id = await host.dispatcher.enqueue(
        "send-email",
        {"template": "welcome", "to": address, "data": {"recipient_name": "Ada"}},
        {"user_id": USER},
        {"retries": 0},
    )
    await host.wait_status(job_id, "failed", within=30)
    return job_id


async def test_a_job_the_views_have_not_caught_up_with_is_masked_for_others_too(
    host: Host,
) -> None:
    """GET /jobs/{id} folds a job the views do not hold yet from its stream: that copy
    must be opened or masked by the caller's scope like the views' (it was served opened,
    so a reader saw the address whenever the views lagged)."""
    address = f"lag-{uuid.uuid4().hex}@example.com"
    job_id = await _failed_email(host, address)
    pool = host.dispatcher.store.pool
    await pool.execute("DELETE FROM jobtrail.job_executions WHERE job_id = $1", job_id)

    status, reader_view, text = await _call(host, "GET", f"/jobs/{job_id}", READER)
    assert status == 200 and reader_view["payload"]["to"] == "[personal]"
    assert address not in text and '"$enc"' not in text
    status, admin_view, _ = await _call(host, "GET", f"/jobs/{job_id}", ADMIN)
    assert status == 200 and admin_view["payload"]["to"] == address


async def test_admins_read_personal_data_others_see_it_masked_and_after_erasure_nobody(
    host: Host,
) -> None:
    address = f"api-{uuid.uuid4().hex}@example.com"
    job_id = await _failed_email(host, address)

    status, admin_view, _ = await _call(host, "GET", f"/jobs/{job_id}", ADMIN)
    assert status == 200 and admin_view["payload"]["to"] == address
    status, reader_view, text = await _call(host, "GET", f"/jobs/{job_id}", READER)
    assert status == 200 and reader_view["payload"]["to"] == "[personal]"
    assert address not in text and '"$enc"' not in text

    status, refused, _ = await _call(host, "POST", "/erasures", READER, {"user_id": USER})
    assert (status, refused["scope"]) == (403, "admin")
    status, bad, _ = await _call(
        host, "POST", "/erasures", ADMIN, {"user_id": USER, "job_id": job_id}
    )
    assert status == 400 and "exactly one" in str(bad)

    status, done, _ = await _call(
        host, "POST", "/erasures", ADMIN, {"user_id": USER, "reason": "erasure request #12"}
    )
    assert status == 200 and done["job_ids"] == [job_id] and done["subject"] == "user"

    for token in (ADMIN, READER):
        for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/events"):
            status, _, text = await _call(host, "GET", path, token)
            assert status == 200 and address not in text and "[erased]" in text
    status, events, _ = await _call(host, "GET", f"/jobs/{job_id}/events", ADMIN)
    assert events["events"][0]["data"]["payload"]["template"] == "welcome"
    status, replay, _ = await _call(host, "POST", f"/jobs/{job_id}/replay", ADMIN, {})
    assert (status, replay["code"]) == (409, "ERASED"), replay


async def test_schedules_personal_data_is_opened_for_admins_and_masked_for_others(
    host: Host,
) -> None:
    address = f"api-s-{uuid.uuid4().hex}@example.com"
    schedule_id = await host.dispatcher.schedule(
        "send-email",
        "0 0 1 1 *",
        {"template": "welcome", "to": address, "data": {"recipient_name": "Ada"}},
        {"user_id": USER + 1},
    )

    status, admin_view, _ = await _call(host, "GET", "/schedules", ADMIN)
    assert status == 200
    (shown,) = [s for s in admin_view["items"] if s["schedule_id"] == schedule_id]
    assert shown["payload"]["to"] == address and shown["payload"]["template"] == "welcome"
    status, reader_view, text = await _call(host, "GET", "/schedules", READER)
    assert status == 200 and address not in text and '"$enc"' not in text
    (masked,) = [s for s in reader_view["items"] if s["schedule_id"] == schedule_id]
    assert masked["payload"]["to"] == "[personal]"

    status, done, _ = await _call(host, "POST", "/erasures", ADMIN, {"user_id": USER + 1})
    assert status == 200 and done["schedule_ids"] == [schedule_id]
    status, after, text = await _call(host, "GET", "/schedules", ADMIN)
    assert status == 200 and address not in text
    assert schedule_id not in [s["schedule_id"] for s in after["items"]]  # deleted
