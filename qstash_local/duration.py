"""Parsing of QStash durations (``1d10h30m``) and of response retry hints (``Retry-After``)."""

from __future__ import annotations

import email.utils
import re

from qstash_local.error import BadRequest

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?:\d+(?:ms|[smhd]))+")
_PART = re.compile(r"(\d+)(ms|[smhd])")
_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
ONE_DAY_S = 86400.0


def parse_duration(text: str, *, name: str) -> float:
    """Parse ``<int><unit>`` parts (units d, h, m, s and, leniently, ms) into seconds."""
    value = text.strip()
    if not _DURATION.fullmatch(value):
        raise BadRequest(
            f"invalid {name} {text!r}: expected a duration such as 10s, 5m, 2h, 1d or 1h30m3s"
        )
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))


def parse_retry_hint(value: str, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After``-style header, or None if unusable or over a day."""
    text = value.strip()
    seconds: float | None = None
    if text.isdigit():
        seconds = float(text)
    elif _GO_DURATION.fullmatch(text):
        seconds = sum(float(n) * _GO_UNIT_SECONDS[u] for n, u in _GO_PART.findall(text))
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = max(0.0, when.timestamp() - now)
    if seconds > ONE_DAY_S:
        return None
    return seconds
