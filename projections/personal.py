"""Personal data in the API: opened for admin tokens, masked for others; erasure (admin).

The views, the history and the archive hold a job's personal fields, error texts and
results sealed with the job's data key (:mod:`jobstore.protect`).  An ``admin`` token
reads them opened (secrets inside still redacted unless ``raw=true``); other tokens read
``[personal]`` in their place.  Either way a value whose key was erased reads ``[erased]``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jobstore import JobValidationError, erasure, protect, redaction
from projections.api_context import actor, context_of, token_of
from projections.token import Scope

_SUBJECTS = (("job_id", "job"), ("user_id", "user"), ("organization_id", "organization"))


async def shown(request: web.Request, value: Any, raw: bool) -> Any:
    """``value`` (a response body) with its sealed values opened or masked for the caller."""
    kids = protect.kids_in(value)
    if not kids:
        return value
    keys = await context_of(request).dispatcher.store.keys.keys(kids)
    if not token_of(request).allows(Scope.ADMIN):
        return protect.mask(value, keys)
    opened = protect.reveal(value, keys)
    return opened if raw else redaction.redact(opened)


async def erase(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    """Erase the subject ``body`` names (exactly one of job_id, user_id, organization_id)."""
    given = [(kind, body[name]) for name, kind in _SUBJECTS if body.get(name) is not None]
    if len(given) != 1:
        raise JobValidationError(
            "invalid erasure", ["give exactly one of job_id, user_id or organization_id"]
        )
    ((kind, subject_id),) = given
    if isinstance(subject_id, bool) or not isinstance(subject_id, str | int):
        raise JobValidationError(
            "invalid erasure", [f"{kind}_id must be a string or a whole number"]
        )
    reason = body.get("reason")
    done = await erasure.erase(
        context_of(request).dispatcher.store,
        kind,  # type: ignore[arg-type]  # one of the three literals of _SUBJECTS
        subject_id,
        reason=reason if isinstance(reason, str) else None,
        actor=actor(request),
    )
    return {
        "subject": done.subject,
        "subject_id": done.subject_id,
        "job_ids": done.job_ids,
        "schedule_ids": done.schedule_ids,
        "position": done.position,
        "vacuumed": done.vacuumed,
    }
