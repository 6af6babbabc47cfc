"""The frozen settings of one qstash_local server."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEV_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"

Clock = Callable[[], float]
"""A function returning the current unix time in seconds."""


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Settings of a qstash_local server; the defaults are QStash's published dev credentials."""

    token: str = DEV_TOKEN
    current_signing_key: str = DEV_CURRENT_SIGNING_KEY
    next_signing_key: str = DEV_NEXT_SIGNING_KEY
    retry_delay_scale: float = 1.0
    max_body_bytes: int = 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024
    clock: Clock = time.time
    scheduler_tick_s: float = 1.0
    delivery_workers: int = 64
    # UNVERIFIED: the dev server's "Max HTTP Response Duration" is not published; QStash's
    # free plan allows 15 minutes, so an attempt without Upstash-Timeout may take that long.
    default_timeout_s: float = 15 * 60
    # UNVERIFIED: how long QStash keeps finished messages readable; ten minutes (the
    # deduplication window) lets callers look a message up right after delivery.
    message_retention_s: float = 10 * 60
    dedup_window_s: float = 10 * 60
    max_events: int = 200_000
    burst_limit: int = 0
    """Publish requests (publish, enqueue, batch) allowed per ``burst_window_s``; 0: no limit."""
    burst_window_s: float = 1.0
    message_quota: int = 0
    """Messages allowed per ``quota_window_s`` (QStash's daily quota); 0: no quota."""
    quota_window_s: float = 86_400.0

    def __post_init__(self) -> None:
        if self.retry_delay_scale < 0:
            raise ValueError(
                "retry_delay_scale must be >= 0 (1.0 is QStash's timing), "
                f"got {self.retry_delay_scale}"
            )
        if self.delivery_workers < 1:
            raise ValueError(f"delivery_workers must be >= 1, got {self.delivery_workers}")
        if self.scheduler_tick_s <= 0:
            raise ValueError(f"scheduler_tick_s must be > 0, got {self.scheduler_tick_s}")
        if self.burst_limit < 0 or self.message_quota < 0:
            raise ValueError("burst_limit and message_quota must be >= 0 (0 means no limit)")
        if self.burst_window_s <= 0 or self.quota_window_s <= 0:
            raise ValueError("burst_window_s and quota_window_s must be > 0")
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
