"""``/v2/dlq``: list, read, delete and retry dead-lettered messages (protocol §8)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from qstash_local import ident
from qstash_local.api.context import CONFIG, PUBLISHER, STATE, int_param, json_response, read_json
from qstash_local.api.filter import page_size, parse_filter
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


def _matching(request: web.Request) -> list[DlqEntry]:
    query = request.query
    selected = parse_filter(query)
    status = int_param(query, "responseStatus")
    return [
        e
        for e in request.app[STATE].dlq
        if selected.matches(e.message, e.created_ms)
        and (status is None or e.outcome.status == status)
    ]


async def list_(request: web.Request) -> web.Response:
    """List DLQ entries, oldest first unless ``order=latestFirst``, 100 per page at most."""
    entries = _matching(request)
    latest = request.query.get("order") == "latestFirst"
    if latest:
        entries.reverse()
    cursor = request.query.get("cursor")
    if cursor:
        key = ident.dlq_order(cursor)
        entries = [e for e in entries if (ident.dlq_order(e.dlq_id) < key) == latest]
        entries = [e for e in entries if e.dlq_id != cursor]
    count = page_size(request.query, 100, 100)
    out: dict[str, Any] = {"messages": [dlq_json(e) for e in entries[:count]]}
    if len(entries) > count:
        out["cursor"] = entries[count - 1].dlq_id
    return json_response(out)


async def get(request: web.Request) -> web.Response:
    """Return one DLQ entry."""
    return json_response(dlq_json(_entry(request)))


async def delete(request: web.Request) -> web.Response:
    """Delete one DLQ entry; 404 if it is not there."""
    entry = _entry(request)
    request.app[STATE].dlq.remove(entry.dlq_id)
    return json_response({"deleted": 1})


async def _ids(request: web.Request) -> list[str] | None:
    payload = await read_json(request, request.app[CONFIG].max_request_bytes)
    ids: list[str] = [
        part for v in request.query.getall("dlqIds", []) for part in v.split(",") if part
    ]
    if payload is not None:
        body_ids = payload.get("dlqIds") if isinstance(payload, dict) else None
        if not isinstance(body_ids, list) or not all(isinstance(i, str) for i in body_ids):
            raise BadRequest('body must be {"dlqIds": ["<dlqId>", ...]} or empty')
        ids.extend(body_ids)
    return ids or None


async def delete_many(request: web.Request) -> web.Response:
    """Delete by ``dlqIds`` (body or query) or, without ids, by the query filters."""
    ids = await _ids(request)
    dlq = request.app[STATE].dlq
    chosen = ids if ids is not None else [e.dlq_id for e in _matching(request)]
    return json_response({"deleted": sum(dlq.remove(i) for i in chosen)})


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
    """Retry entries by ``dlqIds`` (query or body) or, without ids, by the query filters."""
    ids = await _ids(request)
    dlq = request.app[STATE].dlq
    if ids is not None:
        missing = [i for i in ids if dlq.get(i) is None]
        if missing:
            raise NotFound(f"dlq messages not found: {', '.join(missing)}")
        entries = [e for i in ids if (e := dlq.get(i)) is not None]
    else:
        entries = _matching(request)
    parse_spec(request.headers)  # reject bad override headers before retrying anything
    responses = [{"messageId": _retry(request, e, request.headers)} for e in entries]
    return json_response({"responses": responses}, 201)
