"""The ``jobtrail`` command line: one module per command group."""

from __future__ import annotations

import typer

from workers import logs

from . import dashboard, db, demo, qstash_dev, runtime, serve
from . import enqueue as enqueue_command
from . import erase as erase_command
from . import events as events_command
from . import jobs as jobs_command
from . import projections as projections_command
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
events_command.register(app)
erase_command.register(app)
demo.register(app)
dashboard.register(app)
version_command.register(app)


def main() -> None:
    """Run the ``jobtrail`` command line."""
    logs.configure(level=runtime.log_level())
    app()


__all__ = ["app", "main"]
