"""The in-memory log behind ``GET /v2/events``: one row per state change of a message."""

from __future__ import annotations

import base64
import collections
import dataclasses
import itertools
import time
from collections.abc import Iterator
from typing import Any

from qstash_local.message import Message, common_fields, header_map

STATES = (
    "CREATED",
    "ACTIVE",
    "RETRY",
    "ERROR",
    "DELIVERED",
    "FAILED",
    "CANCEL_REQUESTED",
    "CANCELED",
)


@dataclasses.dataclass(slots=True)  # not frozen: frozen __init__ is slow on this hot path
class Event:
    """One log row: a message entered ``state`` at ``time_ms``."""

    seq: int
    time_ms: int
    state: str
    message: Message
    error: str | None = None
    next_delivery_ms: int | None = None
    response_status: int | None = None
    response_headers: dict[str, list[str]] | None = None
    response_body: bytes | None = None


class EventLog:
    """A bounded, append-only list of events, newest last."""

    def __init__(self, max_events: int) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=max_events)
        self._seq = itertools.count(1)

    def record(self, message: Message, state: str, **extra: Any) -> None:
        """Append a row for ``message`` entering ``state``."""
        self._events.append(
            Event(next(self._seq), int(time.time() * 1000), state, message, **extra)
        )

    def newest_first(self) -> Iterator[Event]:
        """Iterate over the rows, newest first."""
        return reversed(self._events)

    def oldest_first(self) -> Iterator[Event]:
        """Iterate over the rows, oldest first."""
        return iter(self._events)


def event_json(event: Event) -> dict[str, Any]:
    """Render one row as ``/v2/events`` returns it (keys of protocol §9)."""
    message = event.message
    spec = message.spec
    out = common_fields(message)
    out["time"] = event.time_ms
    out["state"] = event.state
    out["header"] = header_map(spec.delivered_headers(), spec.redact)
    if message.body:  # omitted without a body, as in messages and schedules
        out["body"] = base64.b64encode(message.body).decode()
    out["maxRetries"] = spec.retries
    if spec.timeout_s is not None:
        out["timeout"] = int(spec.timeout_s * 1000)
    if spec.retry_delay is not None:
        # The Python SDK reads retryDelayExpr, the OpenAPI spec says retryDelayExpression.
        out["retryDelayExpr"] = out["retryDelayExpression"] = spec.retry_delay
    if spec.callback_options.headers:
        out["callbackHeaders"] = _pairs(spec.callback_options.headers)
    if spec.failure_callback_options.headers:
        out["failureCallbackHeaders"] = _pairs(spec.failure_callback_options.headers)
    _add_outcome(out, event)
    return out


def _add_outcome(out: dict[str, Any], event: Event) -> None:
    if event.error is not None:
        out["error"] = event.error
    if event.next_delivery_ms is not None:
        out["nextDeliveryTime"] = event.next_delivery_ms
    if event.response_status is not None:
        out["responseStatus"] = event.response_status
    if event.response_headers is not None:
        out["responseHeader"] = out["responseHeaders"] = event.response_headers
    if event.response_body is not None:
        out["responseBody"] = base64.b64encode(event.response_body).decode()


def _pairs(pairs: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out
