"""Personal data on the dashboard's pages: opened for admin sessions, masked for the others.

A job's personal fields, error texts and results are stored sealed (``jobstore.protect``).
An admin session sees them opened (secrets inside still masked unless ``?raw=true``); other
sessions see ``[personal]``; everyone sees ``[erased]`` once the job's key was erased.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from aiohttp import web

from jobstore import redaction
from projections import Scope
from workers.dashboard import context

T = TypeVar("T")


async def shown(request: web.Request, items: Sequence[T]) -> list[T]:
    """``items`` (events, job executions, rows) as this session may see them."""
    admin = context.session_of(request).allows(Scope.ADMIN)
    keys = context.dispatcher(request).store.keys
    return await keys.reveal_all(items, masked=not admin)


async def shown_rows(
    request: web.Request, rows: list[dict[str, Any]], raw: bool
) -> list[dict[str, Any]]:
    """Rows already masked for secrets, with personal data shown as the session may see it."""
    opened = await shown(request, rows)
    if raw or not context.session_of(request).allows(Scope.ADMIN):
        return opened
    return [redaction.redact(row) for row in opened]  # opened values: secrets masked again
