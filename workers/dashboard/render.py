"""Jinja2 rendering: one template per page, partials for live fragments, safe by default."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
import orjson
from aiohttp import web

import projections
from jobstore import redaction
from workers.dashboard import context, session

ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("workers.dashboard", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
STATUSES: Final = ("pending", "processing", "retrying", "completed", "failed", "cancelled")


def when(moment: datetime | None) -> str:
    """A time as people read it, in UTC, to the second."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """Seconds as a short duration (``850 ms``, ``3.2 s``, ``4 min 5 s``)."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def pretty(value: Any) -> str:
    """A value as indented JSON."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def shown(value: Any, raw: bool) -> Any:
    """``value`` as the page may show it: masked unless ``raw``."""
    return value if raw else redaction.redact(value)


def query_string(params: dict[str, Any], **changes: Any) -> str:
    """``params`` with ``changes`` as a query string (None values left out)."""
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "")}
    return ("?" + urlencode(merged)) if merged else ""


ENV.filters.update(
    when=when, duration=duration, pretty=pretty, qs=query_string, mask=redaction.redact
)


def page(
    request: web.Request, template: str, values: dict[str, Any], status: int = 200
) -> web.Response:
    """Render ``template`` with ``values`` and what every page shows (who, nav, CSRF)."""
    found = request.get(context.SESSION)
    dash = context.dashboard_of(request)
    common: dict[str, Any] = {
        "session": found,
        "csrf": "" if found is None else session.csrf_token(dash.key, found.nonce),
        "can_operate": found is not None and found.allows(projections.Scope.OPERATE),
        "is_admin": found is not None and found.allows(projections.Scope.ADMIN),
        "path": request.path,
        "statuses": STATUSES,
        "live": None,
    }
    text = ENV.get_template(template).render(common | values)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def fragment(template: str, values: dict[str, Any]) -> web.Response:
    """Render a partial template (a live fragment) on its own."""
    text = ENV.get_template(template).render(values)
    return web.Response(text=text, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    """A 303 to ``location`` (after a POST, the browser GETs the result)."""
    return web.Response(status=303, headers={"Location": location})
