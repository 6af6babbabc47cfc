"""How long to wait before trying again: exponential backoff with a cap and jitter.

The one retry policy of jobtrail's own machinery (a background task that died, a QStash
call that failed or was throttled).  A job's retries are a different thing: the job's
``backoff`` option (:class:`jobstore.Backoff`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays that double from ``first`` up to ``cap`` seconds, each shortened at random
    by up to ``jitter`` of itself (so processes that failed together do not retry together)."""

    first: float = 0.5
    cap: float = 30.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"need 0 < first <= cap, not first={self.first}, cap={self.cap}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter is a fraction in [0, 1), not {self.jitter}")

    def delays(self) -> Delays:
        """A fresh sequence of delays under this policy."""
        return Delays(self)


class Delays:
    """The delays of one run of failures; :meth:`reset` after a success."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self._base = policy.first

    def next(self, at_least: float = 0.0) -> float:
        """The next delay (never below ``at_least``, e.g. a server's Retry-After, nor the cap)."""
        base = self._base
        self._base = min(base * 2, self.policy.cap)
        delay = base * (1 - self.policy.jitter * random.random())
        return min(max(delay, at_least), max(self.policy.cap, at_least))

    def reset(self) -> None:
        """Start again from the first delay."""
        self._base = self.policy.first
