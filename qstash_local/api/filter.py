"""Query filters of the events log, the DLQ and bulk cancel: one parser for every endpoint.

The values of one key are ORed, different keys are ANDed. Several values are passed by
repeating the key (``label=a&label=b``, how both SDKs send lists) or joined with commas
(``label=a,b``); QStash's OpenAPI documents both for every multi-value filter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from multidict import MultiMapping
from yarl import URL

from qstash_local.api.context import int_param
from qstash_local.error import BadRequest
from qstash_local.event_log import STATES
from qstash_local.message import Message

# Query key -> the Message attribute it must equal (any of its values).
_FIELDS = {
    "url": "url",
    "topicName": "topic_name",
    # Our choice: the TS SDK names the filter urlGroup but sends it as topicName; accept both.
    "urlGroup": "topic_name",
    "queueName": "queue_name",
    "scheduleId": "schedule_id",
    "callerIp": "caller_ip",
    # Deprecated spelling QStash's OpenAPI still documents for bulk cancel.
    "callerIP": "caller_ip",
}
_SHARED = frozenset({*_FIELDS, "label", "flowControlKey", "fromDate", "toDate", "qstash_token"})
_HOST_PATH = frozenset({"host", "path"})
_IN_PROGRESS = frozenset({"ACTIVE", "RETRY", "ERROR"})

# The keys each endpoint accepts: its filters plus what the Python SDK 3.4 (dlq.py, log.py,
# message.py) and the TypeScript SDK 2.12 (buildBulkActionFilterPayload, logs, listMessages)
# send, plus QStash's OpenAPI. The DLQ takes no host/path: the TS SDK's types document that
# "the DLQ endpoint rejects these".
DLQ_LIST = _SHARED | {
    "messageId",
    "responseStatus",
    "dlqIds",
    "cursor",
    "count",
    "order",
    "trimBody",
}
DLQ_BULK = _SHARED | {"messageId", "responseStatus", "dlqIds", "cursor", "count", "all"}
EVENTS = (
    _SHARED
    | _HOST_PATH
    | {"messageId", "messageIds", "state", "cursor", "count", "order", "trimBody"}
)
# count is deprecated and ignored by QStash for cancel (OpenAPI), async is accepted and the
# cancel still runs to the end before answering (the answer is the same, without actionId).
CANCEL = _SHARED | _HOST_PATH | {"messageIds", "count", "cursor", "all", "async"}


def values(query: MultiMapping[str], *names: str) -> frozenset[str] | None:
    """Every value of ``names`` (repeated or comma-joined), or None when none is given."""
    found = [
        part.strip()
        for name in names
        for value in query.getall(name, [])
        for part in value.split(",")
        if part.strip()
    ]
    return frozenset(found) if found else None


def ordered_values(query: MultiMapping[str], name: str) -> list[str]:
    """Every value of ``name`` in the order given, duplicates dropped."""
    seen = dict.fromkeys(
        part.strip() for value in query.getall(name, []) for part in value.split(",")
    )
    return [v for v in seen if v]


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """Which messages a list, delete, retry or cancel call applies to."""

    message_ids: frozenset[str] | None = None
    fields: tuple[tuple[str, frozenset[str]], ...] = ()
    labels: frozenset[str] | None = None
    flow_control_keys: frozenset[str] | None = None
    hosts: frozenset[str] | None = None
    paths: frozenset[str] | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    states: frozenset[str] | None = None
    statuses: frozenset[int] | None = None

    def matches(self, message: Message, at_ms: int) -> bool:
        """Whether ``message`` (at time ``at_ms``) passes every given condition."""
        if self.message_ids is not None and message.id not in self.message_ids:
            return False
        if any(getattr(message, attr) not in allowed for attr, allowed in self.fields):
            return False
        if self.labels is not None and not self.labels.intersection(message.spec.labels):
            return False
        fc = message.spec.flow_control
        if self.flow_control_keys is not None and (
            fc is None or fc.key not in self.flow_control_keys
        ):
            return False
        if (self.from_ms is not None and at_ms < self.from_ms) or (
            self.to_ms is not None and at_ms > self.to_ms
        ):
            return False
        return self._matches_url_parts(message)

    def accepts_state(self, state: str) -> bool:
        """Whether a log row in ``state`` passes the ``state`` filter."""
        return self.states is None or state in self.states

    def accepts_status(self, status: int) -> bool:
        """Whether a DLQ entry whose last answer was ``status`` passes ``responseStatus``."""
        return self.statuses is None or status in self.statuses

    def _matches_url_parts(self, message: Message) -> bool:
        if self.hosts is None and self.paths is None:
            return True
        target = message.target or URL()
        return (self.hosts is None or target.host in self.hosts) and (
            self.paths is None or target.path in self.paths
        )


def parse_filter(query: MultiMapping[str], accepted: frozenset[str]) -> Filter:
    """Read the filter of one endpoint from a query string; 400 for a key it does not take.

    Our choice where QStash's documentation is silent: a key the endpoint does not know is
    a 400 naming it, never ignored, so a typo (``labeel=x``) cannot widen a bulk delete.
    """
    unknown = sorted(set(query.keys()) - accepted)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise BadRequest(
            f"unknown query parameter {names}: this endpoint accepts {', '.join(sorted(accepted))}"
        )
    flat: Mapping[str, str] = query
    return Filter(
        message_ids=values(query, "messageIds", "messageId"),
        fields=_fields(query),
        labels=values(query, "label"),
        flow_control_keys=values(query, "flowControlKey"),
        hosts=values(query, "host"),
        paths=values(query, "path"),
        from_ms=int_param(flat, "fromDate"),
        to_ms=int_param(flat, "toDate"),
        states=_states(values(query, "state")),
        statuses=_statuses(values(query, "responseStatus")),
    )


def _fields(query: MultiMapping[str]) -> tuple[tuple[str, frozenset[str]], ...]:
    by_attr: dict[str, set[str]] = {}
    for name, attr in _FIELDS.items():
        given = values(query, name)
        if given is not None:
            by_attr.setdefault(attr, set()).update(given)
    return tuple((attr, frozenset(v)) for attr, v in sorted(by_attr.items()))


def _states(given: frozenset[str] | None) -> frozenset[str] | None:
    if given is None:
        return None
    states: set[str] = set()
    for value in given:
        # QStash's OpenAPI spells it CANCELLED, the log rows (and the SDKs) CANCELED.
        state = "CANCELED" if value.upper() == "CANCELLED" else value.upper()
        if state == "IN_PROGRESS":
            states |= _IN_PROGRESS
        elif state in STATES:
            states.add(state)
        else:
            raise BadRequest(
                f"invalid state {value!r}: expected one of {', '.join(STATES)}, IN_PROGRESS"
            )
    return frozenset(states)


def _statuses(given: frozenset[str] | None) -> frozenset[int] | None:
    if given is None:
        return None
    try:
        return frozenset(int(v) for v in given)
    except ValueError:
        raise BadRequest(
            f"invalid responseStatus {', '.join(sorted(given))!r}: expected HTTP status codes"
        ) from None


def page_size(query: Mapping[str, str], default: int, maximum: int) -> int:
    """The ``count`` parameter, clamped to 1..maximum."""
    count = int_param(query, "count", default) or default
    return max(1, min(count, maximum))
