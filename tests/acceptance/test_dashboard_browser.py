"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

Under CI (``CI=true``) these must run; elsewhere they skip, saying why, when chromium or
Playwright is missing.  Screenshots (1280 px and 390 px wide) land in a tmp folder, or in
``$JOBTRAIL_SCREENSHOTS`` when set (``JOBTRAIL_SCREENSHOTS=docs/img`` refreshes the
README's).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import projections
from tests.host_support import Host, running_host
from tests.integration.test_dashboard_buckets import put
from tests.needs import missing
from tests.projection_support import completed, dispatched, failed, new_job_id, started

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
SETTLE_WITHIN = 120.0
"""Seconds the host gets to take up what a test did (publish, run, project).  Generous, not a
measure: every follower reads only events below the oldest transaction still running in the
whole PostgreSQL cluster, and under CI other tests' and tools' transactions hold it back for
long; a host that never gets there still fails, saying why."""


def _problem() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        return f"no chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    problem = _problem()
    if problem is not None:
        missing(problem)
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
    folder = Path(os.environ.get("JOBTRAIL_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


async def screenshot(page: Any, folder: Path, name: str) -> None:
    """The page at desktop and phone widths."""
    for label, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


async def caught_up(host: Host, position: int) -> None:
    """Every projection has applied ``position``; if not, why: the reader's lag, the tasks."""
    pool = host.ctx.store.pool
    try:
        await projections.wait_for_position(pool, position, timeout=SETTLE_WITHIN)
    except projections.ProjectionTimeoutError as exc:
        lag = await projections.reader_lag(pool)
        supervisor = host.ctx.supervisor
        tasks = [s.to_json() for s in supervisor.states.values()] if supervisor else None
        raise AssertionError(f"{exc}\nheld back: {lag}\nthe host's tasks: {tasks}") from exc


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
        await host.wait_status(job_id, "failed", within=SETTLE_WITHIN)
    await caught_up(host, await host.ctx.store.last_position())
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
    await host.wait_status(failed, "completed", within=SETTLE_WITHIN)
    await caught_up(host, await host.ctx.store.last_position())
    await page.locator("#job-live .summary h2 .s-completed").wait_for(timeout=30_000)
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
    await page.locator("#bulk-outcome").wait_for(timeout=SETTLE_WITHIN * 1000)
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


# Text whose contrast with what is behind it is below WCAG AA: 4.5:1, or 3:1 for large
# text (24 px, or 18.66 px bold).  The background is the nearest opaque one among the
# element and its ancestors (SVG text: its fill against the chart's background).
LOW_CONTRAST = """() => {
  const rgb = s => { const m = s.match(/[\\d.]+/g) || []; return m.map(Number); };
  const lum = ([r, g, b]) => {
    const f = c => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const behind = e => {
    for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  let checked = 0;
  for (const e of document.querySelectorAll('body *')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(e);
    const box = e.getBoundingClientRect();
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    if (box.width === 0 || box.height === 0) continue;
    const hidden = 'title, desc, .visually-hidden, .skip, details:not([open]) > :not(summary)';
    if (e.closest(hidden)) continue;
    const svgText = e instanceof SVGElement;
    const fg = rgb(svgText ? style.fill : style.color).slice(0, 3);
    const bg = behind(svgText ? e.closest('svg') : e);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    checked += 1;
    const text = e.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) low.push(`${e.tagName} "${text}" ${ratio.toFixed(2)}:1`);
  }
  return {checked, low};
}"""

# Every control a keyboard user should reach: visible and enabled (a control taken out of
# the tab order with tabindex=-1 still counts: Tab must reach it).
FOCUSABLE = """() => [...document.querySelectorAll(
    'a[href], button, input, select, textarea, summary, [tabindex]')]
  .filter(e => e.type !== 'hidden' && !e.disabled)
  .filter(e => e.matches('a[href], button, input, select, textarea, summary') || e.tabIndex >= 0)
  .filter(e => { const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0
                 || e.classList.contains('skip'); })
  .map(e => e.outerHTML.slice(0, 120))"""


async def tab_order(page: Any, limit: int = 300) -> list[str]:
    """The controls Tab reaches, in order, through one whole round of the page: Tab first
    runs to the page's end (focus leaves the document), then goes round from its top."""
    active = (
        "document.activeElement === document.body ? null"
        " : document.activeElement.outerHTML.slice(0, 120)"
    )
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate(active) is None:
            break
    reached: list[str] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        html = await page.evaluate(active)
        if html is None:
            break
        reached.append(html)
    return reached


async def assert_accessible(page: Any) -> None:
    """Readable contrast, labelled controls, and Tab reaching every control."""
    contrast = await page.evaluate(LOW_CONTRAST)
    assert contrast["checked"] > 20 and contrast["low"] == [], contrast["low"]
    assert await unlabelled_controls(page) == []
    focusable = await page.evaluate(FOCUSABLE)
    reached = await tab_order(page)
    assert reached and sorted(set(focusable) - set(reached)) == [], "controls Tab never reaches"


async def test_the_overview_charts_and_travels_in_time_readably_by_keyboard(
    browser: Any, host: Host, shots: Path
) -> None:
    """The overview's charts over the last hour, its time travel, and the accessibility of
    every page (a job's too, stepped back in time): contrast (WCAG AA) of every visible
    text, labelled controls, the keyboard's reach."""
    pool = host.ctx.store.pool
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=59)
    for n in range(48):  # scheduled runs (the relay leaves them alone), one failure in six
        job_id, at = new_job_id(), start + timedelta(minutes=n + n % 7)
        outcome = failed() if n % 6 == 5 else completed(seconds=0.1 + n / 20)
        kind = "test-job" if n % 3 else "send-email"
        await put(
            pool,
            job_id,
            at,
            dispatched(job_id, job_type=kind, source="schedule"),
            started(),
            outcome,
        )
    await caught_up(host, await host.ctx.store.last_position())
    page = await (await browser.new_context()).new_page()
    await sign_in(page, host, READER)

    await page.get_by_label("Charts over the last").select_option("hour")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url("**/?window=hour*")
    throughput = page.get_by_role("img", name="Jobs finished per minute, last hour")
    await throughput.wait_for()
    assert await throughput.locator("rect.f-failed").count() == 8
    rate = page.get_by_role("img", name="Failure rate per minute, last hour")
    assert await rate.locator("circle").count() > 30
    await screenshot(page, shots, "dashboard-overview")
    await page.get_by_text("The figures as a table").click()
    figures = page.locator("details.chart-data tbody tr")
    assert await figures.count() > 30
    await assert_accessible(page)

    moment = start + timedelta(minutes=20)
    await page.get_by_label("As of (UTC, blank for now)").fill(f"{moment:%Y-%m-%dT%H:%M}")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url("**at=*")
    await page.get_by_role("heading", name=f"Overview as of {moment:%Y-%m-%d %H:%M} UTC").wait_for()
    travel = page.locator("section[aria-labelledby=by-type] tbody")
    counted = sum(int(n) for n in await travel.locator("tr > td:nth-child(2)").all_text_contents())
    assert 15 <= counted < 48, "only the jobs created before that moment"
    await assert_accessible(page)
    await screenshot(page, shots, "dashboard-overview-at")
    await page.get_by_role("link", name="Back to now").click()
    await page.get_by_role("heading", name="Overview", exact=True).wait_for()

    await page.get_by_role("link", name="Jobs", exact=True).click()
    await page.get_by_role("button", name="Apply filters").wait_for()
    await assert_accessible(page)
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}?at=2", "/bulk", "/schedules", "/events"):
        await page.goto(host.url + path)
        await page.locator("main h1").first.wait_for()
        await assert_accessible(page)
