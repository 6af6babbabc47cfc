"""settle_for_serving: what a started host holds is frozen out of the collector's walks,
garbage made before is collected first, and the young generation is collected less often."""

from __future__ import annotations

import gc
import weakref

import projections


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_settling_collects_garbage_then_freezes_the_rest() -> None:
    before = gc.get_threshold()
    kept, dropped = _Node(), _Node()
    gone = weakref.ref(dropped)
    del dropped
    gc.disable()  # the cycle must still be there when settle_for_serving runs
    try:
        projections.settle_for_serving()
        assert gone() is None, "garbage made before settling was frozen instead of collected"
        assert gc.get_freeze_count() > 0
        assert all(o is not kept for o in gc.get_objects()), "what was alive is still walked"
        assert gc.get_threshold()[0] == projections.collector.SERVING_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        gc.enable()
