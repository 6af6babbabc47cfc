"""``jobtrail monitoring alerts|dashboard``: print the shipped alerting rules and dashboard."""

from __future__ import annotations

import sys

import typer

from workers import monitoring

group = typer.Typer(
    help="Print the Prometheus alerting rules and the Grafana dashboard shipped with jobtrail.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``monitoring`` command group to ``app``."""
    app.add_typer(group, name="monitoring")


@group.command("alerts")
def alerts() -> None:
    """Print the Prometheus alerting rules (YAML; load them with rule_files:)."""
    sys.stdout.write(monitoring.text(monitoring.ALERTS))


@group.command("dashboard")
def dashboard() -> None:
    """Print the Grafana dashboard (JSON; import it in Grafana, pick the Prometheus source)."""
    sys.stdout.write(monitoring.text(monitoring.DASHBOARD))
