"""Monitoring shipped with jobtrail: Prometheus alerting rules and a Grafana dashboard.

Both read the metrics every host serves at ``/metrics``.  ``jobtrail monitoring alerts``
and ``jobtrail monitoring dashboard`` print them, ready to be saved where Prometheus and
Grafana load them from.
"""

from __future__ import annotations

from importlib import resources

ALERTS = "alerts.yml"
DASHBOARD = "grafana-dashboard.json"


def text(name: str) -> str:
    """The shipped file ``name`` (ALERTS or DASHBOARD)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
