"""Bulk replay: choose by filter, see the exact count and a sample, confirm the count,
watch the progress."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

import projections
from jobstore import JOB_STATUSES
from projections import JobFilter, Scope
from workers.dashboard import context, jobs, render

SAMPLE: Final = 10
KEPT_RUNS: Final = 50


@dataclass(slots=True)
class Run:
    """A bulk replay started from the dashboard, and how far it got."""

    run_id: str
    params: dict[str, str]
    reason: str
    actor: str
    selected: int
    done: int = 0
    outcome: projections.ReplayOutcome | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the replay has ended (done or failed)."""
        return self.outcome is not None or self.error is not None

    @property
    def percent(self) -> int:
        """How far along it is, 0 to 100."""
        return 100 if self.finished else int(100 * self.done / max(self.selected, 1))


class Runs:
    """The process's bulk replays (the last few kept for their pages), owned by the app."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    def start(self, run: Run, work: Any) -> None:
        """Start ``work`` (a coroutine doing ``run``) in the background."""
        while len(self.runs) >= KEPT_RUNS:
            oldest = next((k for k, r in self.runs.items() if r.finished), None)
            if oldest is None:
                break
            del self.runs[oldest]
        self.runs[run.run_id] = run
        run.task = asyncio.create_task(work, name=f"bulk-replay-{run.run_id}")

    async def stop(self) -> None:
        """Cancel the replays still running and wait for them."""
        tasks = [r.task for r in self.runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


RUNS: Final = web.AppKey("jobtrail_dashboard_bulk_runs", Runs)


def add_routes(app: web.Application) -> None:
    """Register the bulk replay pages."""
    app.router.add_get("/bulk", show, name="bulk")
    app.router.add_post("/bulk", confirm, name="bulk_confirm")
    app.router.add_get("/bulk/runs/{run}", progress, name="bulk_run")


async def _preview(request: web.Request, params: dict[str, str]) -> dict[str, Any]:
    """The count and a sample of the jobs a replay of ``params`` would select."""
    if not params:
        return {"count": None, "sample": [], "error": None}
    try:
        job_filter = JobFilter.from_strings(params).for_replay()
        pool = context.api_context(request).pool
        count = await projections.count_replayable(pool, job_filter)
        sample = await _sample(request, job_filter)
    except projections.InvalidFilterError as exc:
        return {"count": None, "sample": [], "error": str(exc)}
    return {"count": count, "sample": sample, "error": None}


async def _sample(request: web.Request, job_filter: JobFilter) -> list[Any]:
    """Up to SAMPLE of the jobs: those failed or cancelled, newest first."""
    statuses = (
        [job_filter.status]
        if job_filter.status is not None
        else [JOB_STATUSES.FAILED, JOB_STATUSES.CANCELLED]
    )
    found: list[Any] = []
    for status in statuses:
        narrowed = _with_status(job_filter, status)
        found += (await jobs.list_page(request, narrowed, None, SAMPLE)).items
    found.sort(key=lambda e: e.created_at, reverse=True)
    return found[:SAMPLE]


def _with_status(job_filter: JobFilter, status: JOB_STATUSES) -> JobFilter:
    fields = {name: getattr(job_filter, name) for name in jobs.FILTERS}
    return JobFilter(**(fields | {"status": status}))


async def show(request: web.Request) -> web.Response:
    """GET /bulk: the filter form; with a filter, the exact count, a sample, the confirm form."""
    params = jobs.filter_params(request)
    values = await _preview(request, params)
    values |= {
        "params": params,
        "types": sorted(context.dispatcher(request).registry.types()),
        "sources": JobFilter.SOURCES,
        "message": None,
    }
    return render.page(request, "bulk.html", values, status=400 if values["error"] else 200)


async def confirm(request: web.Request) -> web.Response:
    """POST /bulk: replay, if the confirmed count is still the count the filter selects."""
    found = context.require(request, Scope.OPERATE)
    form = await request.post()
    params = {n: v.strip() for n in jobs.FILTERS if isinstance(v := form.get(n), str) and v.strip()}
    reason = form.get("reason")
    expected = form.get("expected_count")
    job_filter = JobFilter.from_strings(params).for_replay()
    if not isinstance(reason, str) or not reason.strip():
        raise projections.InvalidFilterError("reason", "say why (it is recorded in each event)")
    if not isinstance(expected, str) or not expected.isdigit():
        raise projections.InvalidFilterError("expected_count", "confirm the count shown")
    ctx = context.api_context(request)
    count = await projections.count_replayable(ctx.pool, job_filter)
    if count != int(expected):
        values = await _preview(request, params)
        values |= {
            "params": params,
            "types": sorted(ctx.dispatcher.registry.types()),
            "sources": JobFilter.SOURCES,
            "message": f"the count changed from {expected} to {count}; check and confirm again",
        }
        return render.page(request, "bulk.html", values, status=409)
    run = Run(secrets.token_urlsafe(8), params, reason.strip(), found.token.actor, count)
    request.app[RUNS].start(run, _replay(ctx, job_filter, run))
    return render.redirect(f"/bulk/runs/{run.run_id}")


async def _replay(ctx: projections.ApiContext, job_filter: JobFilter, run: Run) -> None:
    def moved(done: int, total: int) -> None:
        run.done, run.selected = done, total

    try:
        run.outcome = await projections.replay_jobs(
            ctx.pool,
            ctx.dispatcher,
            job_filter,
            reason=run.reason,
            progress=moved,
            actor=run.actor,
            expected_count=run.selected,
        )
    except projections.CountMismatchError as exc:
        run.error = str(exc)
    except Exception as exc:
        run.error = f"the replay stopped: {type(exc).__name__}"
        raise


async def progress(request: web.Request) -> web.Response:
    """GET /bulk/runs/{run}: how far a bulk replay got (refreshing itself while it runs)."""
    run = request.app[RUNS].runs.get(request.match_info["run"])
    if run is None:
        raise web.HTTPNotFound(text="no such bulk replay in this process (they are kept a while)")
    values = {"run": run, "live": None if run.finished else "bulk"}
    return render.page(request, "bulk_run.html", values)
