"""Redaction of secret-looking fields, for every log line that may carry a payload."""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"pass(word)?|token|secret|reset_?url|authorization|api_?key|signature|cookie|credential",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a field named ``key`` looks like it holds a secret."""
    return bool(_SECRET_KEY.search(key))


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with secret-looking fields replaced, at any depth."""
    if depth > 20:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    return value


def structlog_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor redacting secret-looking keys in every log line."""
    redacted: MutableMapping[str, Any] = redact(event_dict)
    return redacted


def shape(value: Any, name: str = "payload") -> dict[str, Any]:
    """What a log line may say about ``value``: its top-level keys and its size, no values."""
    keys = sorted(str(k) for k in value) if isinstance(value, Mapping) else []
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        size = -1
    return {f"{name}_keys": keys[:50], f"{name}_bytes": size}
