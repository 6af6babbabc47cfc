"""relaxed_gc: the collector runs less often inside the block, as before after it."""

from __future__ import annotations

import gc

import projections


def test_relaxed_gc_collects_less_often_inside_and_restores_after() -> None:
    before = gc.get_threshold()
    with projections.relaxed_gc():
        assert gc.get_threshold()[0] == 200_000
    assert gc.get_threshold() == before
