"""Flow-control keys: per-key parallelism and rate limits with a waitlist (protocol §10)."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from qstash_local.message import Message
from qstash_local.spec import FlowControl


@dataclasses.dataclass(slots=True, eq=False)
class FlowKey:
    """The live state of one flow-control key (0 means "no limit")."""

    key: str
    parallelism_max: int = 0
    rate_max: int = 0
    period_s: int = 1
    paused: bool = False
    pinned_parallelism: bool = False
    pinned_rate: bool = False
    active: int = 0
    rate_count: int = 0
    period_start: float = 0.0
    timer_armed: bool = False
    waiting: collections.deque[Message] = dataclasses.field(default_factory=collections.deque)

    def configure(self, limits: FlowControl) -> None:
        """Take the limits a new message brings, except those that are pinned."""
        if not self.pinned_parallelism:
            self.parallelism_max = limits.parallelism or 0
        if not self.pinned_rate:
            self.rate_max = limits.rate or 0
            self.period_s = limits.period_s

    def roll(self, now: float) -> None:
        """Start a new rate period if the current one is over."""
        if now >= self.period_start + self.period_s:
            self.period_start = now
            self.rate_count = 0

    def admit(self, now: float) -> bool:
        """Take a parallelism slot and a rate token if both are free; say whether it did.

        UNVERIFIED: parallelism counts attempts in flight, not messages waiting for a retry.
        """
        if self.paused or (self.parallelism_max and self.active >= self.parallelism_max):
            return False
        if self.rate_max:
            self.roll(now)
            if self.rate_count >= self.rate_max:
                return False
            self.rate_count += 1
        self.active += 1
        return True

    def rate_limited(self, now: float) -> bool:
        """Whether only the rate (not pause or parallelism) keeps messages waiting."""
        return bool(self.rate_max) and self.rate_count >= self.rate_max and not self.paused

    def pin(
        self, parallelism: int | None, rate: int | None, period_s: int | None, now: float
    ) -> None:
        """Pin the given limits and restart the rate period."""
        if parallelism is not None:
            self.parallelism_max = parallelism
            self.pinned_parallelism = True
        # UNVERIFIED which flag a partial pin sets: rate or period pins the rate.
        if rate is not None or period_s is not None:
            self.rate_max = self.rate_max if rate is None else rate
            self.period_s = self.period_s if period_s is None else period_s
            self.pinned_rate = True
        self.reset_rate(now)

    def reset_rate(self, now: float) -> None:
        """Zero the rate count and start a new period now."""
        self.rate_count = 0
        self.period_start = now


def flow_key_json(flow: FlowKey) -> dict[str, Any]:
    """Render a key as ``GET /v2/flowControl/{key}`` returns it."""
    return {
        "flowControlKey": flow.key,
        "waitListSize": len(flow.waiting),
        "parallelismMax": flow.parallelism_max,
        "parallelismCount": flow.active,
        "rateMax": flow.rate_max,
        "rateCount": flow.rate_count,
        "ratePeriod": flow.period_s,
        "ratePeriodStart": int(flow.period_start),
        "isPaused": flow.paused,
        "isPinnedParallelism": flow.pinned_parallelism,
        "isPinnedRate": flow.pinned_rate,
    }
