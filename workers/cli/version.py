"""``jobtrail --version``: the installed distribution's version, the one single source."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

DISTRIBUTION = "jobtrail"


def version() -> str:
    """The version of the installed ``jobtrail`` distribution (from its metadata)."""
    return metadata.version(DISTRIBUTION)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"jobtrail {version()}")
        raise typer.Exit


def register(app: typer.Typer) -> None:
    """Give ``app`` a ``--version`` option that prints the version and exits."""

    @app.callback()
    def _root(
        show: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=_show_version,
                is_eager=True,
                help="Show jobtrail's version and exit.",
            ),
        ] = False,
    ) -> None:
        pass
