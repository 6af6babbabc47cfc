"""``make_dashboard(settings)``: the operator dashboard as an aiohttp sub-application.

The host mounts it at ``/`` (``mount``); ``jobtrail dashboard`` runs it alone, with a
database pool of its own.  Every page needs a signed-in session except the sign-in page
and the static files; every POST needs the session's CSRF token.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, Final

import asyncpg
import structlog
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRuleMatching, MatchedSubAppResource

import jobstore
import projections
from jobstore import JobError, JobValidationError, Settings
from workers import outage
from workers.dashboard import (
    bulk,
    context,
    events,
    job,
    jobs,
    live,
    overview,
    render,
    schedules,
    session,
    signin,
)

log = structlog.get_logger("jobtrail.dashboard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC: Final = "/static"
_OPEN: Final = frozenset({"signin", "signin_post", "static"})
_JOB_ERROR_STATUS: Final = {
    "JOB_NOT_FOUND": 404,
    "SCHEDULE_NOT_FOUND": 404,
    "NOT_REPLAYABLE": 409,
    "JOB_ARCHIVED": 409,
    "JOB_FINISHED": 409,
    "CONTENDED": 409,
    "INVALID_TRANSITION": 409,
    "SCHEDULE_EXISTS": 409,
}
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def make_dashboard(
    settings: Settings,
    *,
    access: projections.Access | None = None,
    dsn: str | None = None,
    registry: jobstore.JobRegistry | None = None,
    standalone: bool = False,
) -> web.Application:
    """The dashboard for ``settings``' tokens (``access`` overrides them).

    Mounted on the host it uses the host's pool and dispatcher; ``standalone`` opens its
    own pool on ``dsn`` (else the settings' database) for ``jobtrail dashboard``.
    """
    access = access or projections.Access.from_settings(settings, "127.0.0.1")
    if not access.tokens:
        raise projections.TokenConfigError(
            "the dashboard needs API tokens to sign in with; set JOBTRAIL_API_TOKENS"
        )
    app = web.Application(middlewares=[_errors, _signed_in])
    app[context.DASHBOARD] = context.Dashboard(
        access.tokens, statement_timeout=settings.api_statement_timeout_seconds
    )
    app[live.HUB] = live.Hub(dsn)
    app.cleanup_ctx.append(_hub_owner)
    if standalone:
        app.cleanup_ctx.append(partial(_own_database, settings, dsn, registry))
    app[bulk.RUNS] = bulk.Runs()
    app.cleanup_ctx.append(_runs_owner)
    for module in (signin, overview, jobs, job, bulk, schedules, events, live):
        module.add_routes(app)
    app.router.add_static(STATIC, _static_dir(), name="static", append_version=True)
    app.on_response_prepare.append(_security_headers)
    return app


class _KnownPath(AbstractRuleMatching):
    """Matches the requests the dashboard has a route for (path and method)."""

    def __init__(self, dashboard: web.Application) -> None:
        self._router = dashboard.router
        self._firsts: frozenset[str] | None = None

    async def match(self, request: web.Request) -> bool:
        # Every request to the host asks first (QStash's deliveries too): a path whose first
        # segment no dashboard route starts with is answered without resolving the routes.
        firsts = self._firsts if self._firsts is not None else self._first_segments()
        if firsts and request.path.split("/", 2)[1] not in firsts:
            return False
        # Each resource is asked, not the router: a router finding the path but not the
        # method makes an HTTPMethodNotAllowed, a reference cycle left to the cyclic
        # collector, for every delivery to a job endpoint under /jobs.
        for resource in self._router.resources():
            found, _ = await resource.resolve(request)
            if found is not None:
                return True
        return False

    def _first_segments(self) -> frozenset[str]:
        """The first path segments of the dashboard's routes (empty: some route's first
        segment is variable, so every path must be resolved)."""
        found = {r.canonical.split("/", 2)[1] for r in self._router.resources()}
        self._firsts = frozenset() if any("{" in f for f in found) else frozenset(found)
        return self._firsts

    def get_info(self) -> Any:
        return {"dashboard": True}

    @property
    def canonical(self) -> str:
        return "/"


def mount(host: web.Application, dashboard: web.Application) -> None:
    """Mount ``dashboard`` at ``/`` on ``host``: it answers the paths it knows, the host the
    rest.  aiohttp refuses ``/`` as a sub-application prefix, so the dashboard is mounted
    the way aiohttp mounts a sub-application on a domain, with a rule of its own."""
    host._add_subapp(partial(MatchedSubAppResource, _KnownPath(dashboard), dashboard), dashboard)


def _static_dir() -> Path:
    return Path(str(resources.files("workers.dashboard").joinpath("static")))


async def _hub_owner(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[live.HUB].stop()


async def _runs_owner(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[bulk.RUNS].stop()


async def _own_database(
    settings: Settings,
    dsn: str | None,
    registry: jobstore.JobRegistry | None,
    app: web.Application,
) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        resolved = dsn or (await stack.enter_async_context(jobstore.resolve_dsn(settings)))[0]
        jobstore.keyring.configure(settings)
        pool = await jobstore.create_pool(
            resolved, min_size=1, max_size=max(2, settings.pool_max_size)
        )
        stack.push_async_callback(pool.close)
        dispatcher = jobstore.Dispatcher(
            jobstore.EventStore(pool), registry, jobstore.AddressPolicy.from_settings(settings)
        )
        app[projections.API_CONTEXT] = projections.ApiContext(pool, dispatcher)
        app[live.HUB].dsn = resolved
        yield


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_HEADERS)
    if not request.path.startswith(STATIC):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def _signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pages need a session; POSTs need its CSRF token too."""
    if request.match_info.route.name in _OPEN:
        return await handler(request)
    dash = context.dashboard_of(request)
    found = session.read(dash.key, dash.tokens, request.cookies.get(session.COOKIE))
    if found is None:
        if request.method in ("GET", "HEAD"):
            target = request.rel_url.path_qs if request.path != "/" else None
            raise web.HTTPSeeOther("/signin" + render.query_string({"next": target}))
        raise web.HTTPUnauthorized(text="sign in first")
    request[context.SESSION] = found
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        if not session.check_csrf(dash.key, found.nonce, form.get("csrf")):
            raise web.HTTPForbidden(text="the form's CSRF token is missing or wrong; reload")
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages that say what went wrong and what would be valid; never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(request, exc.status, exc.text or exc.reason)
    except context.ScopeRefused as exc:
        return _error(request, 403, str(exc))
    except projections.InvalidFilterError as exc:
        return _error(request, 400, str(exc))
    except JobValidationError as exc:
        return _error(request, 400, exc.message, exc.validation_errors)
    except JobError as exc:
        return _error(request, _JOB_ERROR_STATUS.get(exc.code, 400), exc.message)
    except projections.CountMismatchError as exc:
        return _error(request, 409, str(exc))
    except asyncpg.QueryCanceledError:
        return _error(request, 503, "the query took too long; narrow the filter or retry")
    except Exception as exc:
        if outage.answer_for(exc) is not None:
            return _error(request, 503, "the database is unavailable; retry later")
        log.exception("unexpected error in the dashboard", path=request.path)
        return _error(request, 500, "internal error; see the host's log")


def _error(
    request: web.Request, status: int, message: str, details: list[str] | None = None
) -> web.Response:
    values = {"status": status, "message": message, "details": details or []}
    return render.page(request, "error.html", values, status=status)
