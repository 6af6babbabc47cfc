"""The jobs page: every filter of the API, shareable URLs, keyset paging, live rows."""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from aiohttp import web

import projections
from projections import JobFilter
from workers.dashboard import context, personal, render

PAGE_SIZE: Final = 50
FILTERS: Final = tuple(f.name for f in dataclasses.fields(JobFilter))


def add_routes(app: web.Application) -> None:
    """Register the jobs page and its live rows."""
    app.router.add_get("/jobs", show, name="jobs")
    app.router.add_get("/jobs/rows", rows, name="job_rows")


def filter_params(request: web.Request) -> dict[str, str]:
    """The filters the query string sets (empty fields are "any")."""
    return {n: v.strip() for n in FILTERS if (v := request.query.get(n, "")).strip()}


async def read_page(
    request: web.Request, params: dict[str, str]
) -> tuple[list[Any], str | None, str | None]:
    """(jobs, next cursor, error): the page the filters and cursor select."""
    cursor = request.query.get("cursor") or None
    try:
        page = await list_page(request, JobFilter.from_strings(params), cursor, PAGE_SIZE)
    except projections.InvalidFilterError as exc:
        return [], None, str(exc)
    return await personal.shown(request, page.items), page.next_cursor, None


async def list_page(
    request: web.Request, job_filter: JobFilter, cursor: str | None, limit: int
) -> projections.JobExecutionPage:
    """A page of ``job_filter``'s jobs, through the query function the API and CLI use."""
    fields = {name: getattr(job_filter, name) for name in FILTERS}
    pool = context.api_context(request).pool
    return await projections.list_job_executions(pool, **fields, cursor=cursor, limit=limit)


async def show(request: web.Request) -> web.Response:
    """GET /jobs: the filter form and the first (or a later) page of matching jobs."""
    params = filter_params(request)
    items, next_cursor, error = await read_page(request, params)
    first_page = "cursor" not in request.query
    values = {
        "params": params,
        "items": items,
        "next_cursor": next_cursor,
        "error": error,
        "types": sorted(context.dispatcher(request).registry.types()),
        "sources": JobFilter.SOURCES,
        "rows_url": "/jobs/rows" + render.query_string(params),
        "live": "jobs" if first_page and error is None else None,
    }
    return render.page(request, "jobs.html", values, status=400 if error else 200)


async def rows(request: web.Request) -> web.Response:
    """GET /jobs/rows: the first page's rows alone (swapped in by live updates)."""
    params = filter_params(request)
    items, _next, _error = await read_page(request, params)
    values = {"items": items, "rows_url": "/jobs/rows" + render.query_string(params)}
    return render.fragment("_jobs_rows.html", values)
