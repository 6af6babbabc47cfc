"""The fault-injection harness (issue 15): the host, qstash_local and a private PostgreSQL
as processes, seeded faults, and the invariants checked from the log and the views.

``tests/acceptance/test_chaos.py`` runs a short seeded run; ``bench/chaos.py`` a long one.
"""

from tests.chaos.checker import VIOLATIONS, Evidence, Findings, check
from tests.chaos.harness import ChaosConfig, ChaosResult, run

__all__ = ["VIOLATIONS", "ChaosConfig", "ChaosResult", "Evidence", "Findings", "check", "run"]
