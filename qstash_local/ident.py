"""Identifiers in QStash's shapes: ``msg_…``, ``scd_…`` and Redis-stream-like DLQ ids."""

from __future__ import annotations

import itertools
import os
import time

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_dlq_sequence = itertools.count()


# Maps every byte to a base58 character (a slight bias is harmless for ids).
_BYTE_TO_BASE58 = bytes(ord(_ALPHABET[i % 58]) for i in range(256))


def message_id() -> str:
    """Return a new message id (``msg_`` + 22 base58 characters; length UNVERIFIED)."""
    return "msg_" + os.urandom(22).translate(_BYTE_TO_BASE58).decode()


def schedule_id() -> str:
    """Return a new schedule id (``scd_`` + base58; UNVERIFIED format)."""
    return "scd_" + os.urandom(22).translate(_BYTE_TO_BASE58).decode()


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
