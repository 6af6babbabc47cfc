"""Durations as jobtrail's Python API takes them: seconds, a timedelta, or QStash's own text.

Plain numbers are seconds (the seed counted milliseconds); text is QStash's duration
grammar, one or more ``<integer><unit>`` with units ``d``, ``h``, ``m``, ``s`` (``"90s"``,
``"5m"``, ``"1h30m"``, ``"1d10h30m"``).  A number as text (``"60"``) is refused: without
a unit it could mean milliseconds to a reader of the seed.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Final

from pydantic import BeforeValidator

_UNIT_SECONDS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION: Final = re.compile(r"(?:[0-9]{1,9}[dhms])+")
_PART: Final = re.compile(r"([0-9]{1,9})([dhms])")
ACCEPTED: Final = (
    "seconds as a number (60, 0.5), a timedelta, or a QStash duration such as "
    "'60s', '5m', '2h', '1d' or '1h30m'"
)


def to_seconds(value: object) -> float:
    """``value`` as seconds; ValueError naming the value and what is accepted otherwise."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        parts = _PART.findall(value.strip())
        seconds = float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in parts))
    else:
        raise ValueError(f"{_show(value)} is not a duration; give {ACCEPTED}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{_show(value)} is not a duration of 0 seconds or more")
    return seconds


Seconds = Annotated[float, BeforeValidator(to_seconds)]
"""A model field holding seconds, given as anything :func:`to_seconds` accepts."""

Duration = Annotated[float | timedelta | str, BeforeValidator(to_seconds)]
"""An input-only field: typed as what callers may pass, it always holds seconds (a float)."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
