"""Query filters shared by the events log, the DLQ and bulk cancel (values ORed, keys ANDed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from multidict import MultiMapping
from yarl import URL

from qstash_local.api.context import int_param
from qstash_local.message import Message

_SIMPLE = {
    "url": "url",
    "topicName": "topic_name",
    "queueName": "queue_name",
    "scheduleId": "schedule_id",
    "callerIp": "caller_ip",
}


def _values(query: MultiMapping[str], *names: str) -> frozenset[str] | None:
    found = [
        part.strip()
        for name in names
        for value in query.getall(name, [])
        for part in value.split(",")
        if part.strip()
    ]
    return frozenset(found) if found else None


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """Which messages a list, delete or cancel call applies to."""

    message_ids: frozenset[str] | None = None
    simple: tuple[tuple[str, str], ...] = ()
    labels: frozenset[str] | None = None
    flow_control_key: str | None = None
    host: str | None = None
    path: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None

    @property
    def empty(self) -> bool:
        """Whether the filter selects everything."""
        return self == Filter()

    def matches(self, message: Message, at_ms: int) -> bool:
        """Whether ``message`` (at time ``at_ms``) passes every given condition."""
        if self.message_ids is not None and message.id not in self.message_ids:
            return False
        if any(getattr(message, attr) != value for attr, value in self.simple):
            return False
        if self.labels is not None and not self.labels.intersection(message.spec.labels):
            return False
        fc = message.spec.flow_control
        if self.flow_control_key is not None and (fc is None or fc.key != self.flow_control_key):
            return False
        if (self.from_ms is not None and at_ms < self.from_ms) or (
            self.to_ms is not None and at_ms > self.to_ms
        ):
            return False
        return self._matches_url_parts(message)

    def _matches_url_parts(self, message: Message) -> bool:
        if self.host is None and self.path is None:
            return True
        target = message.target or URL()
        return (self.host is None or target.host == self.host) and (
            self.path is None or target.path == self.path
        )


def parse_filter(query: MultiMapping[str]) -> Filter:
    """Read the filter keys of protocol §4.3, §8 and §9 from a query string."""
    simple = tuple(
        (attr, query[name]) for name, attr in _SIMPLE.items() if query.get(name) not in (None, "")
    )
    flat: Mapping[str, str] = query
    return Filter(
        message_ids=_values(query, "messageIds", "messageId"),
        simple=simple,
        labels=_values(query, "label"),
        flow_control_key=query.get("flowControlKey") or None,
        host=query.get("host") or None,
        path=query.get("path") or None,
        from_ms=int_param(flat, "fromDate"),
        to_ms=int_param(flat, "toDate"),
    )


def page_size(query: Mapping[str, str], default: int, maximum: int) -> int:
    """The ``count`` parameter, clamped to 1..maximum."""
    count = int_param(query, "count", default) or default
    return max(1, min(count, maximum))
