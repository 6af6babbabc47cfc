"""The ``jobtrail`` command line as a click command, for its generated reference page."""

from __future__ import annotations

import typer

from workers.cli import app

command = typer.main.get_command(app)
"""The click command behind ``jobtrail`` (typer builds it from the registered groups)."""
