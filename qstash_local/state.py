"""All of a server's state, in memory: messages, deduplication, logs, DLQ, queues and more."""

from __future__ import annotations

import collections
import time

from qstash_local.config import Config
from qstash_local.dlq import DeadLetterQueue
from qstash_local.event_log import EventLog
from qstash_local.flow_control import FlowKey
from qstash_local.message import Message
from qstash_local.queue import Queue
from qstash_local.schedule import Schedule
from qstash_local.url_group import UrlGroup

DedupKey = tuple[str, str, str]


class State:
    """Everything one qstash_local server knows; lost when the process ends."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.messages: dict[str, Message] = {}
        self.events = EventLog(config.max_events)
        self.dlq = DeadLetterQueue()
        self.queues: dict[str, Queue] = {}
        self.flows: dict[str, FlowKey] = {}
        self.groups: dict[str, UrlGroup] = {}
        self.schedules: dict[str, Schedule] = {}
        self.current_key = config.current_signing_key
        self.next_key = config.next_signing_key
        self._finished: collections.deque[Message] = collections.deque()
        self._dedup: dict[DedupKey, tuple[str, float]] = {}

    def add(self, message: Message) -> None:
        """Store a new message."""
        self.messages[message.id] = message

    def retire(self, message: Message) -> None:
        """Keep a finished message readable for a while, then forget it."""
        now = time.monotonic()
        message.finished_at = now
        self._finished.append(message)
        horizon = now - self.config.message_retention_s
        while self._finished and (self._finished[0].finished_at or 0.0) < horizon:
            old = self._finished.popleft()
            if self.messages.get(old.id) is old:
                del self.messages[old.id]

    def forget(self, message: Message) -> None:
        """Remove a message at once (a cancelled one)."""
        if self.messages.get(message.id) is message:
            del self.messages[message.id]

    def deduplicated(self, key: DedupKey) -> str | None:
        """Return the id of a message published with ``key`` inside the window, if any."""
        now = time.monotonic()
        while self._dedup:
            oldest = next(iter(self._dedup))
            if self._dedup[oldest][1] > now:
                break
            del self._dedup[oldest]
        hit = self._dedup.get(key)
        return hit[0] if hit is not None else None

    def remember(self, key: DedupKey, message_id: str) -> None:
        """Record that ``key`` was published as ``message_id``."""
        self._dedup[key] = (message_id, time.monotonic() + self.config.dedup_window_s)

    def flow(self, key: str) -> FlowKey:
        """Return the flow-control key, creating it if new."""
        flow = self.flows.get(key)
        if flow is None:
            flow = self.flows[key] = FlowKey(key=key, period_start=time.time())
        return flow
