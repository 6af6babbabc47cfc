"""A short seeded fault-injection run (issue 15): two hosts, qstash_local and a private
PostgreSQL as processes; a host killed or paused past its leases, qstash_local restarted
empty, PostgreSQL restarted fast and immediate, duplicate signed deliveries, cancels and
replays; then every invariant checked from the log and the views (tests/chaos).
``bench/chaos.py`` is the long run.

The checker itself is proven able to fail by tests/unit/test_chaos_checker.py.
"""

from __future__ import annotations

import pytest

from tests.chaos import ChaosConfig, run
from tests.chaos.faults import FAULT_KINDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SEED = 15


async def test_a_seeded_fault_run_loses_nothing_and_records_nothing_twice() -> None:
    lines: list[str] = []
    result = await run(
        ChaosConfig(seed=SEED, jobs=300, duration=20.0, hosts=2, faults=len(FAULT_KINDS) + 1),
        say=lines.append,
    )
    report = "\n".join([*lines, result.summary()])
    assert result.settled, report
    assert set(result.faults) == set(FAULT_KINDS), report  # every kind of fault happened
    assert result.duplicates > 0, report
    assert result.jobs > 200, report
    for kind in (
        "lost",
        "stuck",
        "double_dispatches",
        "double_outcomes",
        "early_starts",
        "view_mismatches",
        "skipped",
        "double_runs",
    ):
        assert getattr(result, kind) == 0, f"{kind}:\n{report}"
    assert result.ok, report
