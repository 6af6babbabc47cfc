"""The JSON codec on hostile depth: measured without recursion, refused without a crash."""

from __future__ import annotations

from typing import Any

import pytest

from jobstore import InvalidEventError, codec


def nested(depth: int) -> Any:
    value: Any = []
    for index in range(depth - 1):
        value = [value] if index % 2 else {"k": value}
    return value


@pytest.mark.parametrize(("value", "depth"), [(1, 0), ("x", 0), ({}, 1), ({"a": [1, {"b": 2}]}, 3)])
def test_depth_counts_nested_lists_and_objects(value: Any, depth: int) -> None:
    assert codec.depth(value) == depth


def test_depth_of_a_hundred_thousand_levels_needs_no_recursion() -> None:
    deep = nested(100_000)

    assert codec.depth(deep) == 100_000
    assert codec.depth(deep, stop_after=32) == 33


def test_dumps_refuses_hostile_depth_with_its_own_error() -> None:
    with pytest.raises(InvalidEventError, match="cannot be stored as JSON"):
        codec.dumps(nested(100_000), what="payload")
