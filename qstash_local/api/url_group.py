"""``/v2/topics``: URL groups and their endpoints (protocol §7)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from qstash_local.api.context import CONFIG, STATE, json_response, read_json
from qstash_local.error import BadRequest, NotFound
from qstash_local.spec import check_name, check_url
from qstash_local.url_group import Endpoint, UrlGroup, url_group_json


async def _endpoints(request: web.Request) -> list[dict[str, Any]]:
    payload = await read_json(request, request.app[CONFIG].max_request_bytes)
    endpoints = payload.get("endpoints") if isinstance(payload, dict) else None
    if not isinstance(endpoints, list) or not all(isinstance(e, dict) for e in endpoints):
        raise BadRequest('body must be {"endpoints": [{"url": "https://...", "name": "..."}]}')
    return endpoints


def _endpoint(item: dict[str, Any]) -> Endpoint:
    url, name = item.get("url"), item.get("name")
    if not isinstance(url, str):
        raise BadRequest(f"endpoint {item!r} needs a url string")
    if name is not None and not isinstance(name, str):
        raise BadRequest(f"endpoint name {name!r} must be a string")
    return Endpoint(check_url(url, what="endpoint"), name)


async def upsert_endpoints(request: web.Request) -> web.Response:
    """Add endpoints to a group, creating it if new."""
    name = check_name(request.match_info["name"], what="url group name")
    endpoints = [_endpoint(item) for item in await _endpoints(request)]
    groups = request.app[STATE].groups
    now_ms = int(time.time() * 1000)
    group = groups.get(name) or UrlGroup(name, now_ms, now_ms)
    group.upsert(endpoints, now_ms)
    groups[name] = group
    return json_response({})


async def remove_endpoints(request: web.Request) -> web.Response:
    """Remove endpoints by url or name; a group left empty is deleted."""
    name = request.match_info["name"]
    items = await _endpoints(request)
    groups = request.app[STATE].groups
    group = groups.get(name)
    if group is None:
        raise NotFound(f"url group {name!r} not found")
    urls = {i["url"] for i in items if isinstance(i.get("url"), str)}
    names = {i["name"] for i in items if isinstance(i.get("name"), str)}
    group.remove(urls, names, int(time.time() * 1000))
    if not group.endpoints:
        del groups[name]
    return json_response({})


async def list_(request: web.Request) -> web.Response:
    """List all URL groups."""
    return json_response([url_group_json(g) for g in request.app[STATE].groups.values()])


async def get(request: web.Request) -> web.Response:
    """Return one URL group; 404 if it does not exist."""
    group = request.app[STATE].groups.get(request.match_info["name"])
    if group is None:
        raise NotFound(f"url group {request.match_info['name']!r} not found")
    return json_response(url_group_json(group))


async def delete(request: web.Request) -> web.Response:
    """Delete a URL group; deleting a missing one succeeds too (UNVERIFIED, see §7)."""
    request.app[STATE].groups.pop(request.match_info["name"], None)
    return json_response({})
