"""``POST /v2/publish/…``, ``POST /v2/enqueue/…`` and ``POST /v2/batch`` (protocol §3)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from qstash_local.api.context import (
    CONFIG,
    LIMITER,
    PUBLISHER,
    caller_ip,
    json_response,
    merged_headers,
    raw_tail,
    read_body,
    read_json,
)
from qstash_local.error import BadRequest, PayloadTooLarge, QStashLocalError
from qstash_local.publisher import Published, Publisher, Target, is_url
from qstash_local.spec import Spec, check_name, parse_spec


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    targets: list[Target]
    spec: Spec
    body: bytes
    queue_name: str | None
    group: bool


def _respond(results: list[Published], group: bool) -> Any:
    if group:
        return [r.json(with_url=True) for r in results]
    return results[0].json(with_url=True)


def _status(results: list[Published]) -> int:
    # 202 with the existing id for duplicates (docs); UNVERIFIED 200 rather than 201 otherwise.
    return 202 if results and all(r.deduplicated for r in results) else 200


def _plan(
    publisher: Publisher,
    destination: str,
    headers: Mapping[str, str],
    body: bytes,
    queue_name: str | None,
) -> _Plan:
    spec = parse_spec(headers)
    if queue_name is not None:
        check_name(queue_name, what="queue name")
    return _Plan(publisher.targets(destination), spec, body, queue_name, not is_url(destination))


def _commit(publisher: Publisher, plan: _Plan, ip: str | None) -> list[Published]:
    return publisher.publish(
        plan.targets, plan.spec, plan.body, queue_name=plan.queue_name, caller_ip=ip
    )


async def _single(
    request: web.Request, destination: str, query: dict[str, str], queue: str | None
) -> web.Response:
    body = await read_body(request, request.app[CONFIG].max_body_bytes)
    publisher = request.app[PUBLISHER]
    plan = _plan(publisher, destination, merged_headers(request, query), body, queue)
    request.app[LIMITER].admit(len(plan.targets))
    results = _commit(publisher, plan, caller_ip(request))
    return json_response(_respond(results, plan.group), _status(results))


async def publish(request: web.Request) -> web.Response:
    """Publish one message to a URL or to every endpoint of a URL group."""
    destination, query = raw_tail(request, "/v2/publish/")
    return await _single(request, destination, query, None)


async def enqueue(request: web.Request) -> web.Response:
    """Enqueue a message on a queue (created with parallelism 1 if missing)."""
    tail, query = raw_tail(request, "/v2/enqueue/")
    queue, _, destination = tail.partition("/")
    if not destination:
        raise BadRequest(
            f"missing destination: expected /v2/enqueue/<queue>/<url or group>, got {tail!r}"
        )
    return await _single(request, destination, query, queue)


def _batch_item(publisher: Publisher, index: int, item: Any, limit: int) -> _Plan:
    if not isinstance(item, dict):
        raise BadRequest(f"batch item {index} must be an object with destination, headers, body")
    destination = item.get("destination")
    headers = item.get("headers") or {}
    body = item.get("body")
    queue = item.get("queue")
    if not isinstance(destination, str) or not destination:
        raise BadRequest(f"batch item {index}: destination must be a non-empty string")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise BadRequest(f"batch item {index}: headers must be an object of string values")
    if body is not None and not isinstance(body, str):
        raise BadRequest(f"batch item {index}: body must be a string or null")
    if queue is not None and not isinstance(queue, str):
        raise BadRequest(f"batch item {index}: queue must be a string or null")
    raw = (body or "").encode()
    if len(raw) > limit:
        raise PayloadTooLarge(
            f"batch item {index}: body is {len(raw)} bytes, the maximum is {limit}"
        )
    return _plan(publisher, destination, CIMultiDict(headers), raw, queue)


async def batch(request: web.Request) -> web.Response:
    """Publish or enqueue many messages; all are validated before any is accepted."""
    config = request.app[CONFIG]
    items = await read_json(request, config.max_request_bytes)
    if not isinstance(items, list):
        raise BadRequest(
            "batch body must be a JSON array of {destination, headers, body, queue} objects"
        )
    publisher = request.app[PUBLISHER]
    plans = []
    for index, item in enumerate(items):
        try:
            plans.append(_batch_item(publisher, index, item, config.max_body_bytes))
        except QStashLocalError as exc:
            if exc.message.startswith("batch item"):
                raise
            raise type(exc)(f"batch item {index}: {exc.message}") from None
    request.app[LIMITER].admit(sum(len(plan.targets) for plan in plans))
    ip = caller_ip(request)
    out = []
    for plan in plans:
        results = _commit(publisher, plan, ip)
        out.append(
            [r.json(with_url=True) for r in results]
            if plan.group
            else results[0].json(with_url=True)
        )
    return json_response(out)
