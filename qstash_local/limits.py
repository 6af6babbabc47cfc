"""QStash's own limits, when asked for: a burst rate limit on publish requests and a
message quota per window (protocol §1.4).  Off by default, as a local server need not
rate-limit; tests turn them on to see how a client copes with 429.

Over the burst limit a publish, enqueue or batch request is answered 429 with
``Burst-RateLimit-Limit``/``-Remaining``/``-Reset``; over the quota with
``RateLimit-Limit``/``-Remaining``/``-Reset`` (the headers the official SDK reads into
RateLimitExceededError and DailyMessageLimitExceededError).  ``-Reset`` is the Unix time
(seconds) the window ends; ``Retry-After`` says the same in seconds from now.  A refused
request publishes nothing.
"""

from __future__ import annotations

import math

from qstash_local.config import Clock, Config
from qstash_local.error import TooManyRequests


class _Window:
    """A count that starts again at zero every ``length`` seconds."""

    def __init__(self, limit: int, length: float, clock: Clock) -> None:
        self.limit, self.length, self.clock = limit, length, clock
        self.started = clock()
        self.used = 0

    def roll(self) -> None:
        now = self.clock()
        if now - self.started >= self.length:
            self.started, self.used = now, 0

    @property
    def reset(self) -> float:
        return self.started + self.length

    def headers(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}-Limit": str(self.limit),
            f"{prefix}-Remaining": str(max(0, self.limit - self.used)),
            f"{prefix}-Reset": str(math.ceil(self.reset)),
            "Retry-After": str(max(1, math.ceil(self.reset - self.clock()))),
        }


class Limiter:
    """Admits publish requests under the configured burst limit and message quota."""

    def __init__(self, config: Config) -> None:
        clock = config.clock
        self.burst = _Window(config.burst_limit, config.burst_window_s, clock)
        self.quota = _Window(config.message_quota, config.quota_window_s, clock)
        self.clock = clock
        self.refused = 0
        """Requests answered 429 so far."""
        self.blocked_until = 0.0

    def throttle(self, seconds: float) -> None:
        """Answer every publish request 429 (burst limit) for the next ``seconds``."""
        self.blocked_until = self.clock() + seconds

    def admit(self, messages: int) -> None:
        """Count one publish request of ``messages`` messages, or raise TooManyRequests."""
        burst, quota = self.burst, self.quota
        now = self.clock()
        if now < self.blocked_until:
            self.refused += 1
            raise TooManyRequests(
                "publishing is throttled for now; retry after the reset",
                {
                    "Burst-RateLimit-Limit": str(burst.limit),
                    "Burst-RateLimit-Remaining": "0",
                    "Burst-RateLimit-Reset": str(math.ceil(self.blocked_until)),
                    "Retry-After": str(max(1, math.ceil(self.blocked_until - now))),
                },
            )
        burst.roll()
        quota.roll()
        if burst.limit and burst.used >= burst.limit:
            self.refused += 1
            raise TooManyRequests(
                f"burst rate limit of {burst.limit} publish requests per "
                f"{burst.length:g} s exceeded; retry after the reset",
                burst.headers("Burst-RateLimit"),
            )
        if quota.limit and quota.used + messages > quota.limit:
            self.refused += 1
            raise TooManyRequests(
                f"message quota of {quota.limit} per {quota.length:g} s exceeded "
                f"({quota.limit - quota.used} left, {messages} asked); retry after the reset",
                quota.headers("RateLimit"),
            )
        burst.used += 1
        quota.used += messages
