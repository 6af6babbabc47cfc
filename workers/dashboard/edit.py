"""Edited payloads: masked values left as shown keep what is stored; changing one is noted."""

from __future__ import annotations

from typing import Any

from jobstore import redaction


def restore_masked(submitted: Any, stored: Any) -> tuple[Any, bool]:
    """The payload to replay from ``submitted`` (an edit of the masked ``stored``), and
    whether the edit changed or removed a value that was masked.

    A part submitted exactly as the page showed it (masked) or as stored keeps the stored
    value; objects and lists of the same shape are compared part by part.
    """
    if submitted == stored or submitted == redaction.redact(stored):
        return stored, False
    if isinstance(submitted, dict) and isinstance(stored, dict):
        merged: dict[str, Any] = {}
        touched = any(_masked_key(k, stored[k]) for k in stored if k not in submitted)
        for key, value in submitted.items():
            if key in stored:
                merged[key], changed = _restore_key(key, value, stored[key])
                touched = touched or changed
            else:
                merged[key] = value
        return merged, touched
    if isinstance(submitted, list) and isinstance(stored, list) and len(submitted) == len(stored):
        pairs = [restore_masked(s, v) for s, v in zip(submitted, stored, strict=True)]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    return submitted, _masks(stored)


def _restore_key(key: str, value: Any, stored: Any) -> tuple[Any, bool]:
    if redaction.is_secret_key(key):
        if value in (redaction.REDACTED, stored):
            return stored, False
        return value, True
    return restore_masked(value, stored)


def _masked_key(key: str, value: Any) -> bool:
    return redaction.is_secret_key(key) or _masks(value)


def _masks(value: Any) -> bool:
    """Whether the page shows ``value`` masked (in whole or in part)."""
    return bool(redaction.redact(value) != value)
