"""Fixed duration buckets for completed jobs, and percentiles estimated from their counts.

Counting a job into a bucket is one integer increment, so the stats stay incremental and
a rebuild reaches exactly the same counts; the price is that a percentile is known only
to within its bucket (interpolated linearly inside it).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Final

# Upper bounds in seconds, roughly 1-2.5-5 per decade from 1 ms to 2 h; the last bucket
# (index len(BOUNDS)) holds everything longer.
BOUNDS: Final[tuple[float, ...]] = (
    0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05,
    0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
    10.0, 25.0, 50.0,
    100.0, 250.0, 500.0,
    1000.0, 2500.0, 7200.0,
)  # fmt: skip


def bucket_of(seconds: float) -> int:
    """The index of the bucket holding a duration of ``seconds``."""
    return bisect.bisect_left(BOUNDS, seconds)


def percentile(counts: Mapping[int, int], pct: float) -> float | None:
    """The ``pct`` percentile (0-100) of the durations counted in ``counts``, or None."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = pct / 100 * total
    seen = 0
    for bucket in sorted(counts):
        count = counts[bucket]
        if count <= 0:
            continue
        if seen + count >= rank:
            low = BOUNDS[bucket - 1] if bucket > 0 else 0.0
            high = BOUNDS[bucket] if bucket < len(BOUNDS) else low
            return low + (high - low) * max(rank - seen, 0) / count
        seen += count
    return BOUNDS[-1]
