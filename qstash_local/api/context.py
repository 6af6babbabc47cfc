"""Typed application state and the small request/response helpers every handler uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

import orjson
from aiohttp import web
from multidict import CIMultiDict

from qstash_local.config import Config
from qstash_local.dispatcher import Dispatcher
from qstash_local.error import BadRequest, PayloadTooLarge
from qstash_local.limits import Limiter
from qstash_local.publisher import Publisher
from qstash_local.state import State

CONFIG = web.AppKey("config", Config)
STATE = web.AppKey("state", State)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
PUBLISHER = web.AppKey("publisher", Publisher)
LIMITER = web.AppKey("limiter", Limiter)


def json_response(data: Any, status: int = 200) -> web.Response:
    """Answer with ``data`` as JSON."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    """Answer with QStash's error shape, ``{"error": message}``."""
    return json_response({"error": message}, status)


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the request body, answering 413 when it is over ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body is {length} bytes, the maximum is {limit} bytes")
    body = await request.read()
    if len(body) > limit:
        raise PayloadTooLarge(f"request body is {len(body)} bytes, the maximum is {limit} bytes")
    return body


async def read_json(request: web.Request, limit: int) -> Any:
    """Read and parse a JSON body; malformed JSON is a 400 naming the problem."""
    body = await read_body(request, limit)
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def raw_tail(request: web.Request, prefix: str) -> tuple[str, dict[str, str]]:
    """Rebuild a destination from the raw path after ``prefix`` and the raw query (§1.1).

    ``qstash_token`` and ``upstash-*`` query keys are taken out of the destination's query
    and returned as configuration (UNVERIFIED split; no SDK sends query configuration).
    """
    path, _, query = request.raw_path.partition("?")
    tail = path[len(prefix) :] if path.startswith(prefix) else request.match_info["tail"]
    kept: list[str] = []
    config: dict[str, str] = {}
    for item in query.split("&") if query else []:
        name = unquote_plus(item.partition("=")[0]).lower()
        if name == "qstash_token":
            continue
        if name.startswith("upstash-"):
            config[name] = unquote_plus(item.partition("=")[2])
            continue
        kept.append(item)
    return (tail + "?" + "&".join(kept) if kept else tail), config


def merged_headers(request: web.Request, extra: Mapping[str, str]) -> CIMultiDict[str]:
    """Request headers plus query configuration that no header overrides."""
    headers = CIMultiDict(request.headers)
    for name, value in extra.items():
        if name not in headers:
            headers[name] = value
    return headers


def int_param(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    """Parse an optional integer query parameter, 400 if it is not one."""
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"invalid {name} {value!r}: expected an integer") from None


def caller_ip(request: web.Request) -> str | None:
    """The publisher's IP address as QStash reports it (``callerIP``)."""
    return request.remote
