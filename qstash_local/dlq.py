"""The dead-letter queue: messages whose retries ran out, with their last response."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from typing import Any

from qstash_local import ident
from qstash_local.message import Message, message_json


@dataclasses.dataclass(slots=True, frozen=True)
class Outcome:
    """The result of one delivery attempt (status 0 when there was no HTTP response)."""

    status: int
    headers: dict[str, list[str]]
    body: bytes
    error: str | None = None
    retry_hint_s: float | None = None
    non_retryable: bool = False

    @property
    def ok(self) -> bool:
        """Whether the attempt succeeded (a 2xx answer)."""
        return 200 <= self.status < 300


@dataclasses.dataclass(slots=True, frozen=True)
class DlqEntry:
    """A failed message in the DLQ."""

    dlq_id: str
    message: Message
    outcome: Outcome
    created_ms: int


class DeadLetterQueue:
    """DLQ entries by id, oldest first."""

    def __init__(self) -> None:
        self._entries: dict[str, DlqEntry] = {}

    def add(self, message: Message, outcome: Outcome, now_ms: int) -> DlqEntry:
        """Put a failed message into the DLQ and return its entry."""
        entry = DlqEntry(ident.dlq_id(), message, outcome, now_ms)
        self._entries[entry.dlq_id] = entry
        return entry

    def get(self, dlq_id: str) -> DlqEntry | None:
        """Return the entry with this id, if any."""
        return self._entries.get(dlq_id)

    def remove(self, dlq_id: str) -> bool:
        """Delete an entry; return whether it existed."""
        return self._entries.pop(dlq_id, None) is not None

    def __iter__(self) -> Iterator[DlqEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


def dlq_json(entry: DlqEntry) -> dict[str, Any]:
    """Render a DLQ entry: the message's keys plus dlqId and the last response."""
    out = message_json(entry.message)
    out["dlqId"] = entry.dlq_id
    # Always present (the SDK indexes it); 0 when there was no HTTP response (UNVERIFIED).
    out["responseStatus"] = entry.outcome.status
    out["responseHeader"] = entry.outcome.headers
    try:
        out["responseBody"] = entry.outcome.body.decode()
    except UnicodeDecodeError:
        out["responseBodyBase64"] = base64.b64encode(entry.outcome.body).decode()
    return out
