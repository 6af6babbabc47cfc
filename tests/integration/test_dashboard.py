"""The operator dashboard over real HTTP, mounted on a whole host (real PostgreSQL, QStash)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

import projections
from tests.host_support import Host, running_host
from tests.integration.test_dashboard_buckets import put
from tests.projection_support import completed, dispatched, failed, new_job_id, started

ADMIN = "admin-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
READER = "reader-token-0123456789abcdef"
TOKENS = f"boss:admin:{ADMIN},ops:operate:{OPERATOR},viewer:read:{READER}"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """A cookie-keeping HTTP client of the dashboard, as a browser would use it."""

    def __init__(self, host: Host, session: aiohttp.ClientSession) -> None:
        self.host, self.session = host, session

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.session.get(self.host.url + path, **kwargs) as response:
            return response.status, await response.text()

    async def post(self, path: str, data: dict[str, Any], **kwargs: Any) -> tuple[int, str, Any]:
        async with self.session.post(
            self.host.url + path, data=data, allow_redirects=False, **kwargs
        ) as response:
            return response.status, await response.text(), response.headers

    async def sign_in(self, token: str) -> tuple[int, Any]:
        _status, page = await self.get("/signin")
        (csrf,) = _CSRF.findall(page)
        status, _text, headers = await self.post("/signin", {"csrf": csrf, "token": token})
        return status, headers

    async def csrf(self, path: str = "/jobs") -> str:
        _status, page = await self.get(path)
        return _CSRF.findall(page)[0]


@contextlib.asynccontextmanager
async def browser(host: Host, token: str | None = None) -> AsyncIterator[Browser]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        client = Browser(host, session)
        if token is not None:
            status, _headers = await client.sign_in(token)
            assert status == 303
        yield client


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, api_tokens=TOKENS) as running:
        yield running


async def views_caught_up(host: Host) -> None:
    position = await host.ctx.store.last_position()
    await projections.wait_for_position(host.ctx.store.pool, position, timeout=15)


async def failed_job(host: Host, **payload: Any) -> str:
    job_id = await host.enqueue(retries=0, fail_times=99, **payload)
    await host.wait_status(job_id, "failed")
    return job_id


async def test_pages_need_a_signed_in_session(host: Host) -> None:
    async with browser(host) as anonymous:
        async with anonymous.session.get(
            host.url + "/jobs?status=failed", allow_redirects=False
        ) as r:
            assert r.status == 303
            assert r.headers["Location"] == "/signin?next=/jobs?status%3Dfailed"
        status, _text, _h = await anonymous.post(
            f"/jobs/{'0' * 8}-0000-0000-0000-{'0' * 12}/cancel", {}
        )
        assert status == 401
        status, page = await anonymous.get("/signin")
        assert status == 200 and 'type="password"' in page
        status, _text = await anonymous.get("/healthz")
        assert status == 200, "the host's own routes are untouched"


async def test_sign_in_opens_a_strict_http_only_session_and_refuses_wrong_tokens(
    host: Host,
) -> None:
    async with browser(host) as client:
        status, headers = await client.sign_in("not-a-token-of-this-host-at-all")
        assert status == 401
        status, headers = await client.sign_in(READER)
        assert status == 303
        cookie = next(c for c in headers.getall("Set-Cookie") if c.startswith("jobtrail_session="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        status, page = await client.get("/")
        assert status == 200 and "viewer" in page and "read only" in page
    async with browser(host) as forged:
        forged.session.cookie_jar.update_cookies({"jobtrail_session": "e30.forged"})
        async with forged.session.get(host.url + "/", allow_redirects=False) as r:
            assert r.status == 303


async def test_a_post_without_the_csrf_token_is_refused(host: Host) -> None:
    job_id = await failed_job(host)
    async with browser(host, ADMIN) as admin:
        status, text, _h = await admin.post(f"/jobs/{job_id}/replay", {"reason": "try"})
        assert status == 403 and "CSRF" in text
        status, text, _h = await admin.post(
            f"/jobs/{job_id}/replay", {"reason": "try", "csrf": "x" * 43}
        )
        assert status == 403
    assert await host.types(job_id) == [
        "job.dispatched",
        "job.started",
        "job.attempt_failed",
        "job.failed",
    ]


async def test_a_read_only_token_sees_everything_and_changes_nothing(host: Host) -> None:
    job_id = await failed_job(host)
    async with browser(host, READER) as viewer:
        status, page = await viewer.get(f"/jobs/{job_id}")
        assert status == 200 and "planned failure" in page
        assert "Replay as it was" not in page
        csrf = _CSRF.findall(page)[0]  # the sign-out form's
        status, text, _h = await viewer.post(
            f"/jobs/{job_id}/replay", {"reason": "try", "csrf": csrf}
        )
        assert status == 403 and "operate" in text
        status, _page = await viewer.get(f"/jobs/{job_id}?raw=true")
        assert status == 403
    assert (await host.types(job_id))[-1] == "job.failed"


async def test_the_jobs_page_filters_and_pages_with_shareable_urls(host: Host) -> None:
    failed = {await failed_job(host, tag=f"f{i}") for i in range(3)}
    done = await host.enqueue(tag="ok")
    await host.wait_status(done, "completed")
    await views_caught_up(host)
    async with browser(host, READER) as viewer:
        status, page = await viewer.get("/jobs?status=failed&type=test-job")
        assert status == 200
        shown = set(re.findall(r'href="/jobs/([0-9a-f-]{36})"', page))
        assert shown == failed
        status, page = await viewer.get("/jobs?status=completed")
        assert set(re.findall(r'href="/jobs/([0-9a-f-]{36})"', page)) == {done}
        status, page = await viewer.get("/jobs?status=nonsense")
        assert status == 400 and "is not one of" in page
        status, rows = await viewer.get("/jobs/rows?status=failed")
        assert rows.startswith("<tbody") and len(re.findall(r"/jobs/[0-9a-f-]{36}", rows)) == 3


async def test_the_jobs_page_pages_by_keyset_cursor(host: Host) -> None:
    ids = [await host.enqueue(tag=f"p{i}") for i in range(55)]
    await views_caught_up(host)
    async with browser(host, READER) as viewer:
        _status, first = await viewer.get("/jobs?type=test-job")
        page_one = re.findall(r'href="/jobs/([0-9a-f-]{36})"', first)
        (older,) = re.findall(r'rel="next" href="([^"]+)"', first)
        _status, second = await viewer.get(older.replace("&amp;", "&"))
        page_two = re.findall(r'href="/jobs/([0-9a-f-]{36})"', second)
    assert len(page_one) == 50 and len(page_two) == 5
    assert set(page_one) | set(page_two) == set(ids)


async def test_the_job_page_shows_its_timeline_errors_and_masks_secrets(host: Host) -> None:
    job_id = await host.enqueue(retries=1, fail_times=99, tag="token=s3cret-value-123")
    await host.wait_status(job_id, "failed")
    async with browser(host, OPERATOR) as ops:
        status, page = await ops.get(f"/jobs/{job_id}")
        assert status == 200
        assert "s3cret-value-123" not in page and "token=[redacted]" in page
        assert page.count('class="bar o-failed"') == 2, "both attempts are drawn"
        assert "planned failure on attempt 1" in page
        assert "Traceback" in page
        assert "Replay as it was" in page and "Show raw values" not in page
        status, page = await ops.get(f"/jobs/{job_id}?at=1")
        assert status == 200 and "after event 1" in page
    async with browser(host, ADMIN) as admin:
        status, page = await admin.get(f"/jobs/{job_id}?raw=true")
        assert status == 200 and "token=s3cret-value-123" in page


async def test_edit_and_replay_keeps_masked_values_and_records_the_reason(host: Host) -> None:
    job_id = await failed_job(host, tag="token=s3cret-value-123")
    async with browser(host, OPERATOR) as ops:
        csrf = await ops.csrf(f"/jobs/{job_id}")
        edited = '{"fail_times": 0, "tag": "token=[redacted]"}'
        status, _t, headers = await ops.post(
            f"/jobs/{job_id}/replay", {"csrf": csrf, "reason": "fixed input", "payload": edited}
        )
        assert status == 303 and headers["Location"] == f"/jobs/{job_id}"
        await host.wait_status(job_id, "completed")
        changed = '{"fail_times": 0, "tag": "token=other"}'
        status, text, _h = await ops.post(
            f"/jobs/{job_id}/replay", {"csrf": csrf, "reason": "x", "payload": changed}
        )
        assert status == 403 and "admin" in text
    events = await host.ctx.store.read_stream(f"job-{job_id}")
    replay = [r for r in events if r.event.type_name == "job.dispatched"][-1]
    assert replay.event.payload["tag"] == "token=s3cret-value-123"
    assert replay.event.payload["fail_times"] == 0
    assert replay.event.reason == "fixed input"
    assert replay.metadata["actor"] == "api:ops"


async def test_cancel_asks_for_a_reason_and_records_the_operator(host: Host) -> None:
    job_id = await host.enqueue(block=True)
    await host.handler.started.wait()
    async with browser(host, OPERATOR) as ops:
        csrf = await ops.csrf(f"/jobs/{job_id}")
        status, _t, _h = await ops.post(f"/jobs/{job_id}/cancel", {"csrf": csrf, "reason": ""})
        assert status == 400
        status, _t, _h = await ops.post(f"/jobs/{job_id}/cancel", {"csrf": csrf, "reason": "stop"})
        assert status == 303
    cancel = (await host.ctx.store.read_stream(f"job-{job_id}"))[-1]
    assert cancel.event.type_name == "job.cancelled" and cancel.event.reason == "stop"
    assert cancel.metadata["actor"] == "api:ops"


async def test_bulk_replay_shows_the_exact_count_and_replays_on_confirmation(host: Host) -> None:
    failed = [await failed_job(host, tag="bulk") for _ in range(3)]
    await views_caught_up(host)
    async with browser(host, OPERATOR) as ops:
        status, page = await ops.get("/bulk?status=failed&type=test-job")
        assert status == 200 and '<span id="bulk-count">3</span>' in page
        assert all(j[:8] in page for j in failed)
        csrf = _CSRF.findall(page)[-1]
        form = {"csrf": csrf, "status": "failed", "type": "test-job", "reason": "outage over"}
        status, page, _h = await ops.post("/bulk", form | {"expected_count": "2"})
        assert status == 409 and "changed from 2 to 3" in page
        status, _page, headers = await ops.post("/bulk", form | {"expected_count": "3"})
        assert status == 303
        deadline = time.monotonic() + 15
        while True:
            _status, page = await ops.get(headers["Location"])
            if 'id="bulk-outcome"' in page or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert "<strong>3</strong> replayed" in page
    for job_id in failed:
        replay = (await host.ctx.store.read_stream(f"job-{job_id}"))[4]
        assert replay.event.type_name == "job.dispatched" and replay.event.reason == "outage over"


async def test_schedules_are_created_with_validated_cron_paused_resumed_deleted(
    host: Host,
) -> None:
    async with browser(host, OPERATOR) as ops:
        status, page = await ops.get("/schedules?cron=*/15+*+*+*+*&type=test-job")
        assert status == 200 and page.count("<li>") >= 5 and 'id="next-runs"' in page
        status, page = await ops.get("/schedules?cron=61+*+*+*+*")
        assert status == 400 and "not a valid cron" in page
        csrf = await ops.csrf("/schedules")
        form = {"csrf": csrf, "type": "test-job", "cron": "0 3 * * *", "payload": '{"tag": "n"}'}
        status, page, _h = await ops.post("/schedules", form | {"cron": "nope"})
        assert status == 400 and "fields" in page
        status, _page, _h = await ops.post("/schedules", form)
        assert status == 303
        (schedule,) = await host.dispatcher.schedules.list()
        for action, paused in (("pause", True), ("resume", False)):
            status, _p, _h = await ops.post(
                f"/schedules/{schedule.schedule_id}/{action}", {"csrf": csrf}
            )
            assert status == 303
            (now,) = await host.dispatcher.schedules.list()
            assert now.paused is paused
        status, _p, _h = await ops.post(f"/schedules/{schedule.schedule_id}/delete", {"csrf": csrf})
        assert status == 303 and await host.dispatcher.schedules.list() == []


async def test_the_overview_and_the_event_log_read_the_same_facts(host: Host) -> None:
    job_id = await failed_job(host)
    await views_caught_up(host)
    async with browser(host, READER) as viewer:
        status, page = await viewer.get("/")
        assert status == 200 and "test-job" in page and "Projections" in page
        status, page = await viewer.get(f"/events?stream=job-{job_id}")
        assert status == 200 and page.count(f"job-{job_id}</code>") == 4
        status, page = await viewer.get("/events?type=job.failed")
        assert "job.started" not in page.split("<tbody")[1]


async def test_live_updates_are_server_sent_events_shared_and_coalesced(host: Host) -> None:
    async with browser(host, READER) as first, browser(host, READER) as second:
        streams = [
            await first.session.get(host.url + "/live"),
            await second.session.get(host.url + "/live"),
        ]
        try:
            assert all(s.headers["Content-Type"] == "text/event-stream" for s in streams)
            for stream in streams:
                assert await stream.content.readline() == b"retry: 3000\n"
            started = time.monotonic()
            for i in range(200):
                await host.enqueue(tag=f"burst{i}", block=True)
            ticks = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    async for line in streams[0].content:
                        ticks += line.startswith(b"event: tick")
            elapsed = time.monotonic() - started
            assert 1 <= ticks <= elapsed / 0.5 + 2, (ticks, elapsed)
            hubs = [app for app in host.app._subapps if "jobtrail_dashboard_hub" in str(list(app))]
            assert len(hubs) == 1
        finally:
            for stream in streams:
                stream.close()


async def test_the_overview_charts_throughput_and_failure_rate_and_travels_in_time(
    host: Host,
) -> None:
    """Jobs recorded half an hour ago (as scheduled runs: the relay leaves them alone)."""
    pool = host.ctx.store.pool
    done, broken = new_job_id(), new_job_id()
    past = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    await put(
        pool,
        done,
        past,
        dispatched(done, job_type="test-job", source="schedule"),
        started(),
        completed(),
    )
    await put(
        pool,
        broken,
        past + timedelta(minutes=2),
        dispatched(broken, job_type="test-job", source="schedule"),
        started(),
        failed(),
    )
    await views_caught_up(host)
    async with browser(host, READER) as viewer:
        status, page = await viewer.get("/?window=hour")
        assert status == 200
        assert '<title id="throughput-title">Jobs finished per minute, last hour</title>' in page
        assert "1 completed and 1 failed in all" in page
        assert "overall: 50.0%" in page and 'aria-labelledby="failure-rate-title' in page
        row = f'<th scope="row">{past:%Y-%m-%d %H:%M}</th><td>1</td><td>1</td><td>1</td><td>0'
        assert row in page, "the figures as a table beside the chart"
        assert 'hx-get="/overview/live?window=hour"' in page

        moment = past + timedelta(minutes=1)
        status, page = await viewer.get(f"/?at={moment:%Y-%m-%dT%H:%M}&window=day")
        assert status == 200 and f"as of {moment:%Y-%m-%d %H:%M} UTC" in page
        counts = page.split('id="by-type"')[1]
        assert '<a href="/jobs?type=test-job">test-job</a></th>\n        <td>1</td>' in counts
        assert "hx-get" not in page, "a moment in the past does not update live"
        assert "Back to now" in page and 'href="/?window=day"' in page

        status, page = await viewer.get(f"/?at={past - timedelta(minutes=5):%Y-%m-%dT%H:%M}")
        assert status == 200 and "No jobs at that moment." in page

        status, page = await viewer.get(f"/?at={datetime.now(UTC) + timedelta(days=1):%Y-%m-%d}")
        assert status == 400 and "is in the future; choose a moment before" in page
        status, page = await viewer.get("/?at=last+tuesday")
        assert status == 400 and "is not a moment; write it as 2026-11-30T09:15 (UTC)" in page
        status, page = await viewer.get("/?window=fortnight")
        assert status == 400 and "use one of hour, day, week" in page


async def test_the_overview_says_where_retention_archived_history(host: Host) -> None:
    job_id = await failed_job(host)
    await views_caught_up(host)
    moved = await host.ctx.store.archive_streams(
        [f"job-{job_id}"], datetime.now(UTC) + timedelta(seconds=1), 0
    )
    assert moved == [f"job-{job_id}"]
    await views_caught_up(host)
    async with browser(host, READER) as viewer:
        status, page = await viewer.get("/?window=hour")
    assert status == 200 and "Archived history" in page
    assert "event histories of <strong>1</strong> finished job out of the log in 1 run" in page
    assert "the counts, the charts and time travel still include them" in page
    assert "0 completed and 1 failed in all" in page, "the archived job still counts"


async def test_the_overview_shows_the_audit_trail_and_says_when_anchoring_stopped(
    db_dsn: str,
) -> None:
    """The audit card counts what is not anchored (and not chained) yet; an event that has
    waited over 15 minutes for an anchor puts an alert on top (the alert rule's threshold).
    The host anchors once, at its start (nothing yet), then not for an hour; the wait is
    made by backdating the oldest event as the superuser."""
    async with running_host(db_dsn, api_tokens=TOKENS, audit_anchor_interval_seconds=3600) as host:
        await _audit_trail_shown(host)


async def _audit_trail_shown(host: Host) -> None:
    job_id = await host.enqueue()
    await host.wait_status(job_id, "completed")
    await views_caught_up(host)
    async with browser(host, READER) as viewer:
        _status, page = await viewer.get("/")
    card = page.split('id="audit-trail"')[1].split("</section>")[0]
    unanchored = await host.ctx.store.pool.fetchval("SELECT count(*) FROM jobtrail.events")
    assert f"Not anchored yet: <strong>{unanchored}</strong> events" in card
    assert "Audit anchoring has stopped" not in page

    conn = await asyncpg.connect(host.settings.database_url)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("ALTER TABLE jobtrail.events DROP CONSTRAINT events_xid_is_writer")
        await conn.execute(
            "UPDATE jobtrail.events SET recorded_at = now() - interval '20 minutes'"
            " WHERE position = (SELECT min(position) FROM jobtrail.events)"
        )
    finally:
        await conn.close()
    async with browser(host, READER) as viewer:
        _status, page = await viewer.get("/")
    alert = page.split('id="anchors-stale"')[1].split("</section>")[0]
    assert "Audit anchoring has stopped" in alert
    assert "the oldest for 20 min" in alert and "no anchor was ever made" in alert
