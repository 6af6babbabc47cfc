"""What the API's handlers share: the context the host provides, and JSON error responses."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, cast

import asyncpg
from aiohttp import web

from jobstore import DatabaseUnavailableError, Dispatcher, query
from projections import serializer, token


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What the API's handlers use: the database pool and the dispatcher."""

    pool: asyncpg.Pool
    dispatcher: Dispatcher


API_CONTEXT: Final = web.AppKey("jobtrail_api_context", ApiContext)
"""Where the host puts the ApiContext (on its own app, or on the sub-application)."""
CURSOR_KEY: Final = web.AppKey("jobtrail_api_cursor_key", bytes)
STATEMENT_TIMEOUT: Final = web.AppKey("jobtrail_api_statement_timeout", float)
"""Seconds any one query of the API may run (``JOBTRAIL_API_STATEMENT_TIMEOUT``)."""
_Q = query.load("projections", "api_context.sql")
API_ACCESS: Final = web.AppKey("jobtrail_api_access", token.Access)
"""Where the host keeps its tokens, for routes outside the API (``/metrics``)."""
TOKEN: Final = web.RequestKey("jobtrail_api_token", token.ApiToken)
"""The token that authenticated the request (set by the API's bearer middleware)."""


def context_of(request: web.Request) -> ApiContext:
    """The ApiContext of the app (or a parent app) serving ``request``."""
    try:
        return request.config_dict[API_CONTEXT]
    except KeyError:
        raise DatabaseUnavailableError("the API is not started yet") from None


@contextlib.asynccontextmanager
async def reading(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection in a read-only snapshot whose queries time out.

    Every read of the views by the API goes through here, so no request can hold the
    database longer than the statement timeout (a timeout is answered 503, not 500).
    """
    seconds = request.config_dict[STATEMENT_TIMEOUT]
    pool = context_of(request).pool
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(_Q["set_statement_timeout"], f"{max(1, round(seconds * 1000))}ms")
        yield cast(asyncpg.Connection, conn)  # the pool's proxy behaves as its connection


def token_of(request: web.Request) -> token.ApiToken:
    """The token that authenticated ``request``."""
    return request[TOKEN]


def actor(request: web.Request) -> str:
    """Who the events this request causes are recorded as: ``api:<token name>``."""
    return token_of(request).actor


def require(request: web.Request, scope: token.Scope) -> None:
    """Raise 403 (as JSON) unless the request's token grants ``scope``."""
    found = token_of(request)
    if not found.allows(scope):
        raise ScopeError(found, scope)


class ScopeError(Exception):
    """A valid token lacking the scope a request needs (answered 403)."""

    def __init__(self, found: token.ApiToken, needed: token.Scope) -> None:
        super().__init__(needed.value)
        self.found, self.needed = found, needed


def forbidden(found: token.ApiToken, needed: token.Scope) -> web.Response:
    """403: the token is valid but lacks ``needed``."""
    return error(
        403,
        f"this needs a token with the {needed.value!r} scope; token {found.name!r} has "
        f"{', '.join(sorted(found.scopes))}",
        "FORBIDDEN",
        scope=needed.value,
    )


def cursor_key(request: web.Request) -> bytes:
    """The key that signs this API's list cursors (derived from its token)."""
    return request.config_dict[CURSOR_KEY]


def error(
    status: int,
    message: str,
    code: str,
    *,
    auth: bool = False,
    retry: int | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """A JSON error response: ``{"error": message, "code": code, ...extra}``."""
    all_headers = dict(headers or {})
    if auth:
        all_headers["WWW-Authenticate"] = 'Bearer realm="jobtrail"'
    if retry is not None:
        all_headers["Retry-After"] = str(retry)
    body = serializer.dumps({"error": message, "code": code, **extra})
    return web.Response(
        status=status, body=body, content_type="application/json", headers=all_headers
    )
