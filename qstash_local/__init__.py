"""qstash_local: a QStash-compatible server for development and tests.

The official ``qstash`` SDK talks to it unchanged (``base_url`` / ``QSTASH_URL``) and
``qstash.Receiver`` accepts its signed deliveries. Like Upstash's own dev server, all
state (messages, logs, DLQ, schedules, queues, URL groups, keys) lives in memory and is
lost when the process stops.
"""

from __future__ import annotations

from qstash_local.app import make_app
from qstash_local.config import (
    DEV_CURRENT_SIGNING_KEY,
    DEV_NEXT_SIGNING_KEY,
    DEV_TOKEN,
    Clock,
    Config,
)
from qstash_local.server import Server, serve
from qstash_local.signature import new_signing_key

__all__ = [
    "DEV_CURRENT_SIGNING_KEY",
    "DEV_NEXT_SIGNING_KEY",
    "DEV_TOKEN",
    "Clock",
    "Config",
    "Server",
    "make_app",
    "new_signing_key",
    "serve",
]
