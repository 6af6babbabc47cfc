"""Identifiers in QStash's shapes: ``msg_…``, ``scd_…`` and Redis-stream-like DLQ ids."""

from __future__ import annotations

import itertools
import os
import time

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_dlq_sequence = itertools.count()


def _base58(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    chars: list[str] = []
    while number:
        number, digit = divmod(number, 58)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars)) or "1"


def message_id() -> str:
    """Return a new message id (``msg_`` + base58; the exact length is UNVERIFIED)."""
    return "msg_" + _base58(os.urandom(16))


def schedule_id() -> str:
    """Return a new schedule id (``scd_`` + base58; UNVERIFIED format)."""
    return "scd_" + _base58(os.urandom(16))


def dlq_id() -> str:
    """Return a new, increasing DLQ id shaped like ``1725323658779-0``."""
    return f"{int(time.time() * 1000)}-{next(_dlq_sequence)}"


def dlq_order(value: str) -> tuple[int, int]:
    """Sort key of a DLQ id (its millisecond part, then its sequence)."""
    ms, _, seq = value.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)
