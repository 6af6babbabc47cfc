"""Queues: FIFO lanes of messages delivered with bounded parallelism (protocol §12)."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from qstash_local.message import Message


@dataclasses.dataclass(slots=True, eq=False)
class Queue:
    """A named queue; ``active`` messages hold a slot until delivered or failed."""

    name: str
    parallelism: int
    paused: bool
    created_ms: int
    updated_ms: int
    active: int = 0
    waiting: collections.deque[Message] = dataclasses.field(default_factory=collections.deque)

    def can_start(self) -> bool:
        """Whether a waiting message may take a slot now."""
        return not self.paused and self.active < self.parallelism


def queue_json(queue: Queue) -> dict[str, Any]:
    """Render a queue as ``GET /v2/queues/{name}`` returns it."""
    return {
        "name": queue.name,
        "parallelism": queue.parallelism,
        "createdAt": queue.created_ms,
        "updatedAt": queue.updated_ms,
        "lag": len(queue.waiting) + queue.active,
        "paused": queue.paused,
    }
