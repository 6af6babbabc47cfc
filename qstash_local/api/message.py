"""``/v2/messages``: read and cancel messages (protocol §4)."""

from __future__ import annotations

from aiohttp import web

from qstash_local.api import filter as filters
from qstash_local.api.context import CONFIG, DISPATCHER, STATE, json_response, read_json
from qstash_local.error import BadRequest, NotFound
from qstash_local.message import Message, message_json
from qstash_local.state import State


def _find(state: State, message_id: str) -> Message:
    message = state.messages.get(message_id)
    if message is None:
        raise NotFound(f"message {message_id!r} not found (unknown, cancelled or expired)")
    return message


async def get(request: web.Request) -> web.Response:
    """Return one message; finished ones stay readable for the retention period."""
    return json_response(message_json(_find(request.app[STATE], request.match_info["id"])))


async def cancel(request: web.Request) -> web.Response:
    """Cancel one pending message; 404 if it is unknown or already finished."""
    message = _find(request.app[STATE], request.match_info["id"])
    if not request.app[DISPATCHER].cancel(message):
        raise NotFound(
            f"message {message.id!r} cannot be cancelled: it is already {message.state.lower()}"
        )
    return json_response({"cancelled": 1})


async def cancel_many(request: web.Request) -> web.Response:
    """Cancel by ``messageIds`` (JSON body or query), by query filters, or everything.

    Ids given, the other filters are ignored (OpenAPI). ``count`` is ignored: QStash's
    OpenAPI deprecates it for cancel and one call cancels every matching message.
    """
    selected = filters.parse_filter(request.query, filters.CANCEL)
    payload = await read_json(request, request.app[CONFIG].max_request_bytes)
    state = request.app[STATE]
    ids = filters.ordered_values(request.query, "messageIds")
    if payload is not None:
        body_ids = payload.get("messageIds") if isinstance(payload, dict) else None
        if not isinstance(body_ids, list) or not all(isinstance(i, str) for i in body_ids):
            raise BadRequest('body must be {"messageIds": ["msg_...", ...]} or empty')
        ids.extend(body_ids)
    if ids or payload is not None:
        candidates = [state.messages[i] for i in dict.fromkeys(ids) if i in state.messages]
    else:
        candidates = [m for m in state.messages.values() if selected.matches(m, m.created_at_ms)]
    dispatcher = request.app[DISPATCHER]
    # 202 as QStash's OpenAPI documents for bulk cancel (the SDKs accept any 2xx).
    return json_response({"cancelled": sum(dispatcher.cancel(m) for m in candidates)}, 202)
