"""Who caused an event: an operator's name, kept in the event's metadata.

Operators act through the API (``api:<token name>``) or the CLI (``cli:<os user>``);
the events they cause (enqueue, cancel, replay, schedule changes) carry
``{"actor": ...}`` in their metadata, so a job's history says who did what.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

KEY: Final = "actor"


def metadata(actor: str | None) -> dict[str, Any] | None:
    """The event metadata naming ``actor`` (None when nobody in particular acted)."""
    return None if actor is None else {KEY: actor}


def of(event_metadata: Mapping[str, Any] | None) -> str | None:
    """The actor an event's metadata names, if any."""
    value = (event_metadata or {}).get(KEY)
    return value if isinstance(value, str) else None
