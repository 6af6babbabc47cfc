"""Garbage collection tuned for bulk work, for a process that does little else meanwhile.

A rebuild allocates millions of short-lived containers (decoded events, their dicts, rows).
With CPython's default threshold the cyclic collector runs every 700 net allocations and
took about a third of a rebuild's time; collecting every 200,000 keeps reference cycles
bounded and costs almost nothing.  The setting is process-wide, so the process owner (the
CLI, a benchmark) opts in; a host serving requests keeps its own.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Final

BULK_THRESHOLD: Final = 200_000


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    """Collect cycles less often inside the block; restore the thresholds after it."""
    before = gc.get_threshold()
    gc.set_threshold(BULK_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
