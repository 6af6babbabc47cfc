"""``/v2/dlq``: list, read, delete and retry dead-lettered messages (protocol §8)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from qstash_local import ident
from qstash_local.api import filter as filters
from qstash_local.api.context import CONFIG, PUBLISHER, STATE, json_response, read_json
from qstash_local.dlq import DlqEntry, dlq_json
from qstash_local.error import BadRequest, NotFound
from qstash_local.publisher import Target
from qstash_local.spec import Spec, check_url, parse_spec


def _entry(request: web.Request) -> DlqEntry:
    dlq_id = request.match_info["id"]
    entry = request.app[STATE].dlq.get(dlq_id)
    if entry is None:
        raise NotFound(f"dlq message {dlq_id!r} not found")
    return entry


def _selected(request: web.Request, accepted: frozenset[str]) -> list[DlqEntry]:
    """The entries the query picks, oldest first: by ``dlqIds`` if any, else by filters."""
    query = request.query
    selected = filters.parse_filter(query, accepted)
    dlq = request.app[STATE].dlq
    ids = filters.ordered_values(query, "dlqIds")
    if ids:
        # With dlqIds the other filters are ignored (OpenAPI, bulk delete and retry).
        return sorted(
            (e for i in ids if (e := dlq.get(i)) is not None),
            key=lambda e: ident.dlq_order(e.dlq_id),
        )
    return [
        e
        for e in dlq
        if selected.matches(e.message, e.created_ms) and selected.accepts_status(e.outcome.status)
    ]


def _page(
    entries: list[DlqEntry], cursor: str | None, count: int, latest: bool = False
) -> tuple[list[DlqEntry], str | None]:
    """At most ``count`` entries after ``cursor``, and the cursor of the next page, if any."""
    if latest:
        entries = entries[::-1]
    if cursor:
        key = ident.dlq_order(cursor)
        entries = [e for e in entries if (ident.dlq_order(e.dlq_id) < key) == latest]
        entries = [e for e in entries if e.dlq_id != cursor]
    page = entries[:count]
    return page, (page[-1].dlq_id if len(entries) > count else None)


async def list_(request: web.Request) -> web.Response:
    """List DLQ entries, oldest first unless ``order=latestFirst``, 100 per page at most."""
    entries = _selected(request, filters.DLQ_LIST)
    query = request.query
    page, cursor = _page(
        entries,
        query.get("cursor"),
        filters.page_size(query, 100, 100),
        latest=query.get("order") == "latestFirst",
    )
    out: dict[str, Any] = {"messages": [dlq_json(e) for e in page]}
    if cursor is not None:
        out["cursor"] = cursor
    return json_response(out)


async def get(request: web.Request) -> web.Response:
    """Return one DLQ entry."""
    return json_response(dlq_json(_entry(request)))


async def delete(request: web.Request) -> web.Response:
    """Delete one DLQ entry; 404 if it is not there."""
    entry = _entry(request)
    request.app[STATE].dlq.remove(entry.dlq_id)
    return json_response({"deleted": 1})


async def _bulk(request: web.Request, *, strict: bool = False) -> tuple[list[DlqEntry], str | None]:
    """The entries a bulk delete or retry acts on, and the cursor to continue with.

    ``dlqIds`` (JSON body, as the Python SDK sends them, or query, as the TS SDK does)
    select exactly those entries. Without ids the filters select, and ``count`` (default
    and maximum 100, OpenAPI) bounds one call; a cursor is answered while more match.
    With ``strict``, an id that is not in the DLQ is a 404 (bulk retry, OpenAPI).
    """
    query = request.query
    entries = _selected(request, filters.DLQ_BULK)
    ids = filters.ordered_values(query, "dlqIds")
    payload = await read_json(request, request.app[CONFIG].max_request_bytes)
    if payload is not None:
        body_ids = payload.get("dlqIds") if isinstance(payload, dict) else None
        if not isinstance(body_ids, list) or not all(isinstance(i, str) for i in body_ids):
            raise BadRequest('body must be {"dlqIds": ["<dlqId>", ...]} or empty')
        ids = list(dict.fromkeys([*ids, *body_ids]))
    if payload is None and not ids:
        return _page(entries, query.get("cursor"), filters.page_size(query, 100, 100))
    dlq = request.app[STATE].dlq
    missing = [i for i in ids if dlq.get(i) is None]
    if strict and missing:
        raise NotFound(f"dlq messages not found: {', '.join(missing)}")
    return [e for i in ids if (e := dlq.get(i)) is not None], None


async def delete_many(request: web.Request) -> web.Response:
    """Delete by ``dlqIds`` or by the query filters, ``count`` at a time with a cursor."""
    entries, cursor = await _bulk(request)
    dlq = request.app[STATE].dlq
    out: dict[str, Any] = {"deleted": sum(dlq.remove(e.dlq_id) for e in entries)}
    if cursor is not None:
        out["cursor"] = cursor
    return json_response(out)


def _override(spec: Spec, headers: Mapping[str, str]) -> Spec:
    """Apply the config headers of a retry request to the original spec."""
    parsed = parse_spec(headers)
    changes: dict[str, Any] = {"dedup_id": None, "content_dedup": False, "not_before_s": None}
    names = {
        "Upstash-Retries": "retries",
        "Upstash-Method": "method",
        "Upstash-Timeout": "timeout_s",
        "Upstash-Delay": "delay_s",
        "Upstash-Not-Before": "not_before_s",
        "Upstash-Callback": "callback",
        "Upstash-Failure-Callback": "failure_callback",
    }
    for header, field in names.items():
        if header in headers:
            changes[field] = getattr(parsed, field)
    if "Upstash-Retry-Delay" in headers:
        changes["retry_delay"] = parsed.retry_delay
        changes["retry_delay_fn"] = parsed.retry_delay_fn
    return dataclasses.replace(spec, **changes)


def _retry(request: web.Request, entry: DlqEntry, headers: Mapping[str, str]) -> str:
    message = entry.message
    spec = _override(message.spec, headers)
    target = Target(
        check_url(message.url, what="destination"), message.topic_name, message.endpoint_name
    )
    results = request.app[PUBLISHER].publish(
        [target], spec, message.body, queue_name=message.queue_name, caller_ip=message.caller_ip
    )
    request.app[STATE].dlq.remove(entry.dlq_id)
    return results[0].message_id


async def retry_one(request: web.Request) -> web.Response:
    """Publish a DLQ entry again as a new message (config headers override) and drop it."""
    entry = _entry(request)
    return json_response({"messageId": _retry(request, entry, request.headers)}, 201)


async def retry_many(request: web.Request) -> web.Response:
    """Retry by ``dlqIds`` or by the query filters, ``count`` at a time with a cursor."""
    entries, cursor = await _bulk(request, strict=True)
    parse_spec(request.headers)  # reject bad override headers before retrying anything
    out: dict[str, Any] = {
        "responses": [{"messageId": _retry(request, e, request.headers)} for e in entries]
    }
    if cursor is not None:
        out["cursor"] = cursor
    return json_response(out, 201)
