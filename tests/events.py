"""Event types used only by the tests."""

from __future__ import annotations

from typing import Any

from jobstore import Event


class Noted(Event, type_name="test.noted"):
    """A test event carrying arbitrary data."""

    n: int = 0
    text: str = ""
    extra: dict[str, Any] = {}
