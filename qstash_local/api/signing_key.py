"""``/v2/keys``: read and rotate the signing keys (protocol §11)."""

from __future__ import annotations

from aiohttp import web

from qstash_local import signature
from qstash_local.api.context import STATE, json_response


async def get(request: web.Request) -> web.Response:
    """Return the current and next signing keys."""
    state = request.app[STATE]
    return json_response({"current": state.current_key, "next": state.next_key})


async def rotate(request: web.Request) -> web.Response:
    """Make next the current key, mint a new next, and return the new pair."""
    state = request.app[STATE]
    state.current_key, state.next_key = state.next_key, signature.new_signing_key()
    return json_response({"current": state.current_key, "next": state.next_key})
