"""JSON encoding for the log, with the checks PostgreSQL's jsonb would otherwise fail on."""

from __future__ import annotations

import math
from typing import Any

import orjson

from jobstore import errors


def dumps(value: Any, *, what: str = "value") -> bytes:
    """Encode ``value`` as JSON, refusing what jsonb cannot hold faithfully.

    PostgreSQL's jsonb rejects the NUL character, and orjson would silently turn NaN and
    infinities into ``null``; both are refused here with the path of the bad value.
    """
    _check(value, what)
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise errors.InvalidEventError(f"{what} cannot be stored as JSON: {exc}") from None


def loads(raw: bytes | str) -> Any:
    """Decode JSON read from the database."""
    return orjson.loads(raw)


def _check(value: Any, path: str) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise errors.InvalidEventError(
                f"{path} contains a NUL character (\\u0000), which PostgreSQL cannot store; "
                "remove it or encode the text (e.g. base64)"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise errors.InvalidEventError(
                f"{path} is {value}, which JSON cannot represent; use a finite number or null"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise errors.InvalidEventError(
                    f"{path} has a non-string key {key!r}; JSON object keys must be strings"
                )
            _check(key, f"{path} key {key[:40]!r}")
            _check(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
