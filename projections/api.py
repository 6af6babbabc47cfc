"""The read/ops HTTP API: a sub-application the host mounts at ``/api/v1``.

    app.add_subapp("/api/v1", projections.api_app(token))
    app[projections.API_CONTEXT] = projections.ApiContext(pool, dispatcher)  # at start-up

Every route but ``/openapi.json`` needs ``Authorization: Bearer <token>`` (401 without).
Every error is JSON, ``{"error": ..., "code": ...}``, with the status its cause deserves:
an invalid parameter is a 400 naming it, an unknown job a 404, a job in the wrong state
a 409, a database that went away a 503; never a traceback.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from aiohttp import web

from jobstore import DatabaseUnavailableError, JobError, JobValidationError
from projections import cursor, errors, route
from projections.api_context import API_CONTEXT, CURSOR_KEY, ApiContext, error

log = structlog.get_logger("jobtrail.api")

_JOB_ERROR_STATUS: Final = {
    "JOB_NOT_FOUND": 404,
    "NOT_REPLAYABLE": 409,
    "JOB_FINISHED": 409,
    "JOB_EXISTS": 409,
    "CONTENDED": 409,
    "INVALID_TRANSITION": 409,
}
_HTTP_CODES: Final = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def api_app(token: str, context: ApiContext | None = None) -> web.Application:
    """The API as a sub-application; ``token`` is the bearer token it requires."""
    if not isinstance(token, str) or len(token) < 16:
        raise ValueError("the API token must be a string of at least 16 characters")
    app = web.Application(middlewares=[_errors, _bearer(token)])
    app[CURSOR_KEY] = cursor.key_from_secret(token)
    if context is not None:
        app[API_CONTEXT] = context
    route.add_routes(app)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bearer(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name == route.OPENAPI:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            return error(401, "missing or wrong bearer token", "UNAUTHORIZED", auth=True)
        return await handler(request)

    return bearer


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.InvalidFilterError as exc:
        return error(400, str(exc), exc.code, parameter=exc.parameter)
    except JobValidationError as exc:
        return error(400, exc.message, exc.code, details=exc.validation_errors)
    except JobError as exc:
        return error(_JOB_ERROR_STATUS.get(exc.code, 400), exc.message, exc.code)
    except errors.ProjectionError as exc:
        return error(503, str(exc), exc.code, retry=5)
    except DatabaseUnavailableError:
        return error(503, "the database is unavailable; retry later", "UNAVAILABLE", retry=5)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "HTTP_ERROR")
        return error(exc.status, exc.reason, code, headers=_kept_headers(exc))
    except Exception:
        log.exception("unexpected error in the API", path=request.path, method=request.method)
        return error(500, "internal error; see the host's log", "INTERNAL")


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
