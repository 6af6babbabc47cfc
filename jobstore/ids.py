"""Identifiers: the one test of what a job id (a UUID in its text form) looks like."""

from __future__ import annotations

import uuid


def is_uuid(value: object) -> bool:
    """Whether ``value`` is a UUID in text form (as job ids and data-key ids are)."""
    try:
        uuid.UUID(value)  # type: ignore[arg-type]  # anything else is simply not one
    except (ValueError, TypeError, AttributeError):
        return False
    return True
