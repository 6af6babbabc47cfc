"""Garbage collection tuned for bulk work, for a process that does little else meanwhile.

A rebuild allocates millions of short-lived containers (decoded events, their dicts, rows).
With CPython's default threshold the cyclic collector runs every 700 net allocations and
took about a third of a rebuild's time; collecting every 200,000 keeps reference cycles
bounded and costs almost nothing.  The setting is process-wide, so the process owner (the
CLI, a benchmark) opts in.

A host serving deliveries (``jobtrail serve``) settles once it has started
(:func:`settle_for_serving`): what it built to start (modules, models, validators, pools:
~110,000 objects) never goes away, yet each full collection walked it again, ~70 ms of
CPU each, and with the young generation collected every 700 net allocations the cyclic
collector took ~20 % of a host's CPU in an end-to-end flood.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Final

BULK_THRESHOLD: Final = 200_000
SERVING_THRESHOLD: Final = 10_000
"""Net allocations between collections of the young generation in a serving host."""


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect cycles less often inside the block; restore the thresholds after it."""
    before = gc.get_threshold()
    gc.set_threshold(BULK_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def settle_for_serving() -> None:
    """Move everything alive now out of the collector's sight, and collect the young
    generation every :data:`SERVING_THRESHOLD` net allocations (once, after start-up).

    Frozen objects are never collected: garbage made before the call is collected first;
    cycles made later are collected as before (CPython's ``gc.freeze``).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(SERVING_THRESHOLD, *gc.get_threshold()[1:])
