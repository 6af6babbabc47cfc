"""How long to wait before the next attempt of a failed message (protocol §5.4, §5.5)."""

from __future__ import annotations

import math

from qstash_local import expression
from qstash_local.dlq import Outcome
from qstash_local.message import Message

MAX_BACKOFF_S = 86400.0


def default_backoff_s(retried: int) -> float:
    """QStash's default: ``min(86400, e^(2.5 n))`` seconds before retry ``n`` (1-based)."""
    return min(MAX_BACKOFF_S, math.exp(2.5 * (retried + 1)))


def retry_delay_s(message: Message, outcome: Outcome, scale: float) -> float:
    """Seconds until the next attempt.

    A ``Retry-After``-style response header wins over ``Upstash-Retry-Delay``, which wins
    over the default backoff (UNVERIFIED precedence; the docs do not order the first two).
    ``message.retried`` is the number of retries already done (0 before the first retry).
    The server's scale factor speeds up QStash's own delays only: a destination that says
    ``Retry-After: 3`` (e.g. "my attempt's lease ends in 3 s") is waited for as asked.
    """
    if outcome.retry_hint_s is not None:
        return outcome.retry_hint_s
    if message.spec.retry_delay_fn is not None:
        base = expression.delay_ms(message.spec.retry_delay_fn, message.retried) / 1000.0
    else:
        base = default_backoff_s(message.retried)
    return base * scale
