"""The ``jobtrail`` command line: one module per command group."""

from __future__ import annotations

import sys

import typer

from jobstore import tracing
from workers import logs

from . import audit as audit_command
from . import dashboard, db, demo, qstash_dev, runtime, serve
from . import enqueue as enqueue_command
from . import erase as erase_command
from . import events as events_command
from . import jobs as jobs_command
from . import keys as keys_command
from . import monitoring as monitoring_command
from . import projections as projections_command
from . import relay as relay_command
from . import retention as retention_command
from . import schedule as schedule_command
from . import stats as stats_command
from . import version as version_command

app = typer.Typer(
    name="jobtrail",
    help="jobtrail: an event-sourced job tracker on Upstash QStash.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

db.register(app)
qstash_dev.register(app)
serve.register(app)
enqueue_command.register(app)
schedule_command.register(app)
jobs_command.register(app)
stats_command.register(app)
projections_command.register(app)
relay_command.register(app)
retention_command.register(app)
events_command.register(app)
erase_command.register(app)
keys_command.register(app)
audit_command.register(app)
demo.register(app)
dashboard.register(app)
monitoring_command.register(app)
version_command.register(app)


NOT_TRACED = frozenset({"qstash-dev"})
"""Commands that never trace: the local QStash stands for a service outside the trace (its
HTTP client would otherwise replace the traceparent it forwards with its own)."""


def main() -> None:
    """Run the ``jobtrail`` command line."""
    logs.configure(level=runtime.log_level())
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in NOT_TRACED:  # OTEL_* and the jobtrail[otel] extra switch traces on
        tracing.setup(f"jobtrail-{command}" if command.isidentifier() else "jobtrail")
    app()


__all__ = ["app", "main"]
