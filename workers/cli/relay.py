"""``jobtrail relay status``: how far the relay got, and what each host's relay is doing."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

import projections
from workers import supervisor
from workers.cli import database, runtime

relay_app = typer.Typer(
    help="The outbox relay (log → QStash): show its status.", no_args_is_help=True
)
RELAY = "relay"


def register(app: typer.Typer) -> None:
    """Add the ``relay`` command group to ``app``."""
    app.add_typer(relay_app, name="relay")


@relay_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the relay's position and backlog, and each host's relay task (exit 3 if no host
    runs it, or it is stopped on an event).

    A host's relay is running, or restarting after a failure (since when, with the error);
    its report also says how often QStash throttled it (429) and until when it waits.
    """
    settings = runtime.load_settings()

    async def main() -> tuple[projections.ProjectionStatus, list[supervisor.TaskReport]]:
        async with database.open_database(settings) as db:  # says what to migrate
            (position,) = await projections.projection_status(db.pool, [RELAY])
            return position, await supervisor.task_reports(db.pool, [RELAY])

    position, reports = runtime.run(main)
    running = any(r.state == "running" and not r.stale() for r in reports)
    if as_json:
        runtime.print_json(
            {**position.to_json(), "running": running, "hosts": [r.to_json() for r in reports]}
        )
    else:
        console = Console()
        console.print(f"relay at position {position.position}, {position.lag:,} events behind")
        failure = position.to_json()["error"]
        if failure is not None:
            console.print(
                f"stopped at {failure['position']} ({failure['event_type']}): {failure['error']}"
            )
        console.print(task_table("relay on each host", reports))
    if not running or position.failure is not None:
        raise typer.Exit(code=3)


def task_table(title: str, reports: list[supervisor.TaskReport]) -> Table | str:
    """Each host's report on a background task, as a table (a line when there is none)."""
    if not reports:
        return f"{title}: no host has reported this task (is `jobtrail serve` running?)"
    table = Table(title=title)
    for column in ("host", "task", "state", "QStash throttled"):
        table.add_column(column)
    for r in reports:
        throttled = r.detail.get("qstash_throttled")
        waiting = r.detail.get("waiting_until")
        text = "" if throttled is None else f"{throttled} time(s)"
        if waiting:
            text += f", waiting until {waiting}"
        table.add_row(r.host, r.task, r.describe(), text)
    return table
