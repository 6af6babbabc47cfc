"""The ``jobtrail`` command line: one module per command group."""

from __future__ import annotations

import typer

from workers import logs

from . import db, demo, qstash_dev, runtime, serve

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
demo.register(app)


def main() -> None:
    """Run the ``jobtrail`` command line."""
    logs.configure(level=runtime.log_level())
    app()


__all__ = ["app", "main"]
