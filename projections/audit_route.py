"""The API's audit routes (admin scope, see audit_openapi.SCOPES): verify the log, its anchors.

    GET /audit/verify[?from=POSITION]     the verification report (200 whether intact or not)
    GET /audit/anchors[?after=SEQ&limit=N] signed anchors in order, to keep outside the database

The host puts its ``JOBTRAIL_AUDIT_KEY`` (with its ``JOBTRAIL_AUDIT_PREVIOUS_KEYS``) on the
app under :data:`AUDIT_KEY`.
"""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from jobstore import DatabaseUnavailableError, audit, audit_verify
from projections import errors, route
from projections.api_context import context_of

AUDIT_KEY: Final = web.AppKey("jobtrail_audit_key", audit.AuditKey)
"""Where the host keeps the key that signs and checks the log's anchors."""
MAX_ANCHORS: Final = 1000
_NUMBER = re.compile(r"[0-9]{1,18}")


def add_routes(app: web.Application) -> None:
    """Register the audit routes on the API's ``app``."""
    app.router.add_get("/audit/verify", verify, name="verifyAudit")
    app.router.add_get("/audit/anchors", list_anchors, name="listAuditAnchors")


async def verify(request: web.Request) -> web.Response:
    """GET /audit/verify: check every event's hash, the anchors and every anchored stream."""
    params = route._single(request.query.items(), ("from",))
    report = await audit_verify.verify(
        context_of(request).pool, _key(request), from_position=_number(params, "from", 0)
    )
    return route.json(report.to_json())


async def list_anchors(request: web.Request) -> web.Response:
    """GET /audit/anchors: up to ``limit`` signed anchors after ``after``, in order."""
    params = route._single(request.query.items(), ("after", "limit"))
    limit = _number(params, "limit", MAX_ANCHORS)
    if not 1 <= limit <= MAX_ANCHORS:
        raise errors.InvalidFilterError("limit", f"must be between 1 and {MAX_ANCHORS}")
    anchors = await audit.anchors(context_of(request).pool, _number(params, "after", 0), limit)
    after = anchors[-1].seq if len(anchors) == limit else None
    return route.json({"items": [a.to_json() for a in anchors], "next_after": after})


def _key(request: web.Request) -> audit.AuditKey:
    try:
        return request.config_dict[AUDIT_KEY]
    except KeyError:
        raise DatabaseUnavailableError("the host has not configured its audit key yet") from None


def _number(params: dict[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not _NUMBER.fullmatch(text):
        raise errors.InvalidFilterError(name, f"{text[:20]!r} is not a whole number >= 0")
    return int(text)
