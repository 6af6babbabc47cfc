"""What the dashboard's pages share: its settings, the signed-in session, database reads."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, cast

import asyncpg
from aiohttp import web

import projections
from jobstore import DatabaseUnavailableError, Dispatcher, query
from workers.dashboard import session

_Q = query.load("workers.dashboard", "queries.sql")


class ScopeRefused(Exception):
    """The signed-in token lacks the scope this needs (answered 403)."""

    def __init__(self, needed: projections.Scope, name: str) -> None:
        super().__init__(f"this needs a token with the {needed.value!r} scope; {name!r} lacks it")
        self.needed = needed


@dataclass(slots=True)
class Dashboard:
    """The dashboard's own state: the tokens it accepts and the key signing its sessions."""

    tokens: tuple[projections.ApiToken, ...]
    statement_timeout: float = 5.0
    key: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.key = session.key_for(self.tokens)


DASHBOARD: Final = web.AppKey("jobtrail_dashboard", Dashboard)
SESSION: Final = web.RequestKey("jobtrail_dashboard_session", session.Session)


def dashboard_of(request: web.Request) -> Dashboard:
    """The dashboard serving ``request``."""
    return request.config_dict[DASHBOARD]


def session_of(request: web.Request) -> session.Session:
    """The signed-in session of ``request`` (the middleware refused it otherwise)."""
    return request[SESSION]


def require(request: web.Request, scope: projections.Scope) -> session.Session:
    """The session, if its token grants ``scope``; ScopeRefused otherwise."""
    found = session_of(request)
    if not found.allows(scope):
        raise ScopeRefused(scope, found.token.name)
    return found


def actor(request: web.Request) -> str:
    """Who events caused from the dashboard are recorded as: ``api:<token name>``."""
    return session_of(request).token.actor


def api_context(request: web.Request) -> projections.ApiContext:
    """The pool and dispatcher (the host's, or the standalone dashboard's own)."""
    try:
        return request.config_dict[projections.API_CONTEXT]
    except KeyError:
        raise DatabaseUnavailableError("the dashboard is not started yet") from None


def dispatcher(request: web.Request) -> Dispatcher:
    """The dispatcher actions go through (cancel, replay, schedules)."""
    return api_context(request).dispatcher


@contextlib.asynccontextmanager
async def reading(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection in one read-only snapshot whose queries time out."""
    timeout = dashboard_of(request).statement_timeout
    pool = api_context(request).pool
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(_Q["set_statement_timeout"], f"{max(1, round(timeout * 1000))}ms")
        yield cast(asyncpg.Connection, conn)  # the pool's proxy behaves as its connection


def queries() -> dict[str, str]:
    """The dashboard's own named queries."""
    return _Q
