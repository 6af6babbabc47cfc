"""The read/ops HTTP API: a sub-application the host mounts at ``/api/v1``.

    app.add_subapp("/api/v1", projections.api_app(tokens, public_docs=loopback))
    app[projections.API_CONTEXT] = projections.ApiContext(pool, dispatcher)  # at start-up

Every route needs ``Authorization: Bearer <token>`` (401 without) whose token grants the
route's scope (403 naming the scope otherwise); ``/openapi.json`` is open only with
``public_docs``.  Events an API call causes record ``{"actor": "api:<token name>"}``.
Every error is JSON, ``{"error": ..., "code": ...}``, with the status its cause deserves:
an invalid parameter is a 400 naming it, an unknown job a 404, a job in the wrong state
a 409, a database that went away a 503; never a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, Final

import asyncpg
import structlog
from aiohttp import web

from jobstore import JobError, JobValidationError, is_transient
from projections import audit_route, cursor, errors, openapi, route, token
from projections.api_context import (
    API_CONTEXT,
    CURSOR_KEY,
    STATEMENT_TIMEOUT,
    TOKEN,
    ApiContext,
    ScopeError,
    error,
    forbidden,
)

log = structlog.get_logger("jobtrail.api")

_JOB_ERROR_STATUS: Final = {
    "JOB_NOT_FOUND": 404,
    "NOT_REPLAYABLE": 409,
    "JOB_ARCHIVED": 409,
    "JOB_FINISHED": 409,
    "JOB_EXISTS": 409,
    "CONTENDED": 409,
    "INVALID_TRANSITION": 409,
    "ERASED": 409,
}
_HTTP_CODES: Final = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def api_app(
    tokens: Collection[token.ApiToken],
    context: ApiContext | None = None,
    *,
    public_docs: bool = False,
    statement_timeout: float = 5.0,
) -> web.Application:
    """The API as a sub-application accepting ``tokens`` (at least one).

    ``public_docs`` serves ``/openapi.json`` without a token (for a host on loopback);
    ``statement_timeout`` bounds each of its queries, in seconds.
    """
    if not tokens or not all(isinstance(t, token.ApiToken) for t in tokens):
        raise ValueError("the API needs at least one projections.token.ApiToken")
    app = web.Application(middlewares=[_errors, _bearer(tuple(tokens), public_docs)])
    app[STATEMENT_TIMEOUT] = statement_timeout
    app[CURSOR_KEY] = cursor.key_from_secret("\n".join(sorted(t.secret for t in tokens)))
    if context is not None:
        app[API_CONTEXT] = context
    route.add_routes(app)
    audit_route.add_routes(app)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bearer(tokens: tuple[token.ApiToken, ...], public_docs: bool) -> Any:
    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = request.match_info.route.name
        if public_docs and name == route.OPENAPI:
            return await handler(request)
        found = token.authenticate(tokens, request.headers.get("Authorization", ""))
        if found is None:
            return error(401, "missing or wrong bearer token", "UNAUTHORIZED", auth=True)
        needed = openapi.SCOPES.get(name or "", token.Scope.READ)
        if not found.allows(needed):
            return forbidden(found, needed)
        request[TOKEN] = found
        return await handler(request)

    return bearer


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ScopeError as exc:
        return forbidden(exc.found, exc.needed)
    except errors.InvalidFilterError as exc:
        return error(400, str(exc), exc.code, parameter=exc.parameter)
    except JobValidationError as exc:
        return error(400, exc.message, exc.code, details=exc.validation_errors)
    except JobError as exc:
        return error(_JOB_ERROR_STATUS.get(exc.code, 400), exc.message, exc.code)
    except errors.ProjectionError as exc:
        return error(503, str(exc), exc.code, retry=5)
    except asyncpg.QueryCanceledError:
        return error(
            503,
            "the query took longer than this API allows; narrow the filter or retry later",
            "QUERY_TIMEOUT",
            retry=5,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "HTTP_ERROR")
        return error(exc.status, exc.reason, code, headers=_kept_headers(exc))
    except Exception as exc:
        if is_transient(exc):  # a lost connection, a server restarting: never a 500
            return error(503, "the database is unavailable; retry later", "UNAVAILABLE", retry=5)
        log.exception("unexpected error in the API", path=request.path, method=request.method)
        return error(500, "internal error; see the host's log", "INTERNAL")


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
