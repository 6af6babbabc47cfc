"""JSON encoding for the log, with the checks PostgreSQL's jsonb would otherwise fail on."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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


def depth(value: Any, *, stop_after: int | None = None) -> int:
    """How deeply ``value``'s lists and objects nest (a scalar is 0, ``{}`` is 1).

    Iterative, so a hostile 100,000-deep value cannot exhaust the interpreter's stack;
    with ``stop_after`` the walk ends as soon as the depth passes it.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if stop_after is not None and deepest > stop_after:
            return deepest
        stack.extend(
            (child, level + 1) for child in children if isinstance(child, Mapping | list | tuple)
        )
    return deepest


def loads(raw: bytes | str) -> Any:
    """Decode JSON read from the database."""
    return orjson.loads(raw)


def _check(value: Any, root: str) -> None:
    """Walk ``value`` (iteratively: payloads can be deep) for what jsonb or JSON refuse."""
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                raise errors.InvalidEventError(
                    f"{path} contains a NUL character (\\u0000), which PostgreSQL cannot "
                    "store; remove it or encode the text (e.g. base64)"
                )
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str:
                    raise errors.InvalidEventError(
                        f"{path} has a non-string key {key!r}; JSON object keys must be strings"
                    )
                if "\x00" in key:
                    raise errors.InvalidEventError(f"{path} key {key[:40]!r} contains a NUL")
                if type(child) in _CONTAINERS_AND_TEXT or isinstance(child, float):
                    stack.append((child, f"{path}.{key}"))
        elif kind is list or kind is tuple:
            stack.extend(
                (child, f"{path}[{index}]")
                for index, child in enumerate(item)
                if type(child) in _CONTAINERS_AND_TEXT or isinstance(child, float)
            )
        elif isinstance(item, float) and not math.isfinite(item):
            raise errors.InvalidEventError(
                f"{path} is {item}, which JSON cannot represent; use a finite number or null"
            )
        elif isinstance(item, dict | list | tuple | str):
            stack.append((_plain(item), path))


_CONTAINERS_AND_TEXT = frozenset({str, dict, list, tuple})


def _plain(item: Any) -> Any:
    """A subclass of dict/list/str as its plain type, so the walk's fast checks apply."""
    if isinstance(item, str):
        return str(item)
    if isinstance(item, dict):
        return dict(item)
    return list(item)
