"""``jobtrail qstash-dev``: run the local QStash stand-in (built in its own issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``qstash-dev`` command to ``app``."""

    @app.command("qstash-dev")
    def qstash_dev(port: int = typer.Option(8080, help="Port to listen on.")) -> None:
        """Run a QStash-compatible server on 127.0.0.1 (state in memory)."""
        typer.echo("qstash-dev is not built yet", err=True)
        raise typer.Exit(code=2)
