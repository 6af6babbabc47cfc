"""Personal data on the dashboard: opened for admins, masked for readers, erased for all."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from jobstore import erasure
from tests.host_support import Host, running_host
from tests.integration.test_dashboard import ADMIN, READER, TOKENS, browser, views_caught_up

USER = 616


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, api_tokens=TOKENS, smtp_port=1) as running:
        yield running


async def test_the_job_list_and_page_open_personal_data_only_for_admins(host: Host) -> None:
    address = f"dash-{uuid.uuid4().hex}@example.com"
    job_id = await host.dispatcher.send_welcome_email_async(
        {"to": address, "recipient_name": "Ada"}, {"user_id": USER}
    )
    await host.wait_status(job_id, "failed", "retrying", within=30)  # no SMTP on port 1
    await views_caught_up(host)
    pages = (f"/jobs/{job_id}", "/jobs", f"/events?stream=job-{job_id}")

    async with browser(host, ADMIN) as admin, browser(host, READER) as reader:
        status, page = await admin.get(f"/jobs/{job_id}")
        assert status == 200 and address in page
        for path in pages:
            status, page = await reader.get(path)
            assert status == 200 and address not in page and "$enc" not in page, path
        status, page = await reader.get(f"/jobs/{job_id}")
        assert "[personal]" in page

        await erasure.erase(host.ctx.store, "user", USER)

        for browsing in (admin, reader):
            for path in pages:
                status, page = await browsing.get(path)
                assert status == 200 and address not in page, path
            status, page = await browsing.get(f"/jobs/{job_id}")
            assert "[erased]" in page
