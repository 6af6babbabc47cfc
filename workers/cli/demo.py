"""``jobtrail demo``: the whole system on the embedded defaults, in one command."""

from __future__ import annotations

import logging

import typer
from rich.console import Console

from workers import logs
from workers.cli import runtime


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo)


def demo(
    keep: bool = typer.Option(
        False, "--keep", help="Leave everything running afterwards (for the dashboard)."
    ),
) -> None:
    """Start everything, run a few hundred jobs, show the results, replay the failures."""
    from workers.demo import run_demo  # the host and its stand-ins load only when needed

    settings = runtime.load_settings()
    logs.configure(level=logging.ERROR)  # the expected failures of the story are not news
    console = Console()
    runtime.run(lambda: run_demo(settings, console, keep=keep))
    console.print("[bold green]demo finished[/]: everything it started has been stopped")
