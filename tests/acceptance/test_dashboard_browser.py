"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

Under CI (``CI=true``) these must run; elsewhere they skip, saying why, when chromium or
Playwright is missing.  Screenshots (1280 px and 390 px wide) land in a tmp folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import projections
from tests.host_support import Host, running_host

CHROMIUM = os.environ.get("JOBTRAIL_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPERATOR = "operator-token-0123456789abcdef"
READER = "reader-token-0123456789abcdef"
TOKENS = f"ops:operate:{OPERATOR},viewer:read:{READER}"
WIDTHS = {"desktop": 1280, "phone": 390}


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        return f"no chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    problem = _missing()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run under CI: {problem}")
        print(f"skipping browser tests: {problem}")
        pytest.skip(problem)
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, api_tokens=TOKENS) as running:
        yield running


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    print(f"screenshots in {folder}")
    return folder


async def screenshot(page: Any, folder: Path, name: str) -> None:
    """The page at desktop and phone widths."""
    for label, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


async def sign_in(page: Any, host: Host, token: str) -> None:
    await page.goto(host.url + "/")
    assert "/signin" in page.url
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(host.url + "/")


async def unlabelled_controls(page: Any) -> list[str]:
    """Form controls a screen reader could not name."""
    found: list[str] = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => e.type !== 'hidden')
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !(e.tagName === 'BUTTON' && e.textContent.trim()))
            .map(e => e.outerHTML.slice(0, 80))"""
    )
    return found


async def test_an_operator_fixes_failed_jobs_in_the_browser(
    browser: Any, host: Host, shots: Path
) -> None:
    failed = await host.enqueue(retries=0, fail_times=99, tag="token=s3cret-value-123")
    others = [await host.enqueue(retries=0, fail_times=99, tag="bulk") for _ in range(2)]
    for job_id in [failed, *others]:
        await host.wait_status(job_id, "failed")
    position = await host.ctx.store.last_position()
    await projections.wait_for_position(host.ctx.store.pool, position, timeout=15)
    schedule_id = await host.dispatcher.schedule("test-job", "*/5 * * * *", {"tag": "cron"})
    page = await (await browser.new_context()).new_page()
    await sign_in(page, host, OPERATOR)
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.get_by_role("heading", name="Jobs by type and status").wait_for()
    await screenshot(page, shots, "overview")

    await page.get_by_role("link", name="Jobs", exact=True).click()
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Apply filters").click()
    await page.wait_for_url("**/jobs?status=failed*")
    assert await unlabelled_controls(page) == []
    rows = page.locator("#job-rows tr")
    assert await rows.count() == 3
    await screenshot(page, shots, "jobs")

    await page.locator(f'a[href="/jobs/{failed}"]').click()
    await page.get_by_role("heading", name="Timeline").wait_for()
    content = await page.content()
    assert "s3cret-value-123" not in content and "token=[redacted]" in content
    assert await unlabelled_controls(page) == []
    await screenshot(page, shots, "job-failed")
    await page.get_by_label("Payload to replay with").fill(
        '{"fail_times": 0, "sleep": 0.8, "tag": "token=[redacted]"}'
    )
    await page.get_by_label("Reason for the edit").fill("fixed the input")
    await page.get_by_role("button", name="Replay with this payload").click()
    await page.wait_for_url(f"{host.url}/jobs/{failed}")
    await page.evaluate("window.__same_page = true")
    summary = page.locator("#job-live .summary h2 .status")
    assert await summary.text_content() != "completed"
    await page.locator("#job-live .summary h2 .s-completed").wait_for(timeout=15000)
    assert await page.evaluate("window.__same_page === true"), "updated live, not reloaded"
    await screenshot(page, shots, "job-completed")
    history = await host.ctx.store.read_stream(f"job-{failed}")
    replay = [r.event for r in history if r.event.type_name == "job.dispatched"][-1]
    assert replay.payload["tag"] == "token=s3cret-value-123"

    await page.get_by_role("link", name="Bulk replay").click()
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_label("Type").select_option("test-job")
    await page.get_by_role("button", name="Count matching jobs").click()
    count = await page.locator("#bulk-count").text_content()
    assert count == "2"
    await page.get_by_label("Reason (recorded in every replay)").fill("outage over")
    await page.get_by_label("Type the count to confirm").fill(count)
    await screenshot(page, shots, "bulk")
    await page.get_by_role("button", name="Replay 2 job(s)").click()
    await page.locator("#bulk-outcome").wait_for(timeout=15000)
    assert "2 replayed" in (await page.locator("#bulk-outcome").text_content() or "")

    await page.get_by_role("link", name="Schedules").click()
    await page.get_by_role("button", name=f"Pause {schedule_id}").click()
    await page.get_by_role("button", name=f"Resume {schedule_id}").wait_for()
    (schedule,) = await host.dispatcher.schedules.list()
    assert schedule.paused
    await screenshot(page, shots, "schedules")
    await page.get_by_role("link", name="Event log").click()
    await screenshot(page, shots, "events")

    refused = await page.request.post(
        f"{host.url}/jobs/{failed}/replay", form={"reason": "no token"}
    )
    assert refused.status == 403, "a POST without the CSRF token"

    viewer = await (await browser.new_context()).new_page()
    await sign_in(viewer, host, READER)
    await viewer.goto(f"{host.url}/jobs/{failed}")
    assert await viewer.get_by_role("button", name="Replay as it was").count() == 0
    csrf = await viewer.locator('input[name="csrf"]').first.get_attribute("value")
    refused = await viewer.request.post(
        f"{host.url}/jobs/{failed}/cancel", form={"reason": "x", "csrf": csrf}
    )
    assert refused.status == 403, "a read-only token's POST"
