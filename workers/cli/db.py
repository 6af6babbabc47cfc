"""``jobtrail db migrate|status``: bring the schema up to date and show its state."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

import jobstore
from workers.cli import runtime

db_app = typer.Typer(help="Database schema: migrate and show status.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group to ``app``."""
    app.add_typer(db_app, name="db")


@db_app.command("migrate")
def migrate(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Apply pending migrations (starting the embedded PostgreSQL if DATABASE_URL is unset)."""
    settings = runtime.load_settings()

    async def main() -> tuple[list[str], list[jobstore.MigrationState], bool, int]:
        async with jobstore.resolve_dsn(settings) as (dsn, embedded):
            applied = await jobstore.migrate(dsn)
            states = await jobstore.status(dsn)
            async with jobstore.open_database(
                settings.model_copy(update={"database_url": dsn})
            ) as db:
                position = await jobstore.EventStore(db.pool).last_position()
        return [f"{m.version:04d}_{m.name}" for m in applied], states, embedded, position

    applied, states, embedded, position = runtime.run(main)
    where = f"embedded PostgreSQL in {settings.pgdata_dir}" if embedded else "DATABASE_URL"
    if as_json:
        runtime.print_json(
            {
                "database": where,
                "applied": applied,
                "last_position": position,
                "migrations": _states_json(states),
            }
        )
        return
    console = Console()
    console.print(f"database: {where}")
    console.print(f"applied now: {', '.join(applied) if applied else 'nothing (up to date)'}")
    console.print(_states_table(states))
    console.print(f"event log: last position {position}")


@db_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every migration and whether it is applied."""
    settings = runtime.load_settings()

    async def main() -> list[jobstore.MigrationState]:
        async with jobstore.resolve_dsn(settings) as (dsn, _embedded):
            return await jobstore.status(dsn)

    states = runtime.run(main)
    if as_json:
        runtime.print_json({"migrations": _states_json(states)})
    else:
        Console().print(_states_table(states))
    if any(s.applied_at is None for s in states):
        raise typer.Exit(code=3)


def _states_json(states: list[jobstore.MigrationState]) -> list[dict[str, object]]:
    return [
        {
            "version": s.version,
            "name": s.name,
            "applied_at": s.applied_at.isoformat() if s.applied_at else None,
        }
        for s in states
    ]


def _states_table(states: list[jobstore.MigrationState]) -> Table:
    table = Table(title="migrations")
    table.add_column("version", justify="right")
    table.add_column("name")
    table.add_column("applied at")
    for s in states:
        applied = s.applied_at.isoformat(timespec="seconds") if s.applied_at else "pending"
        table.add_row(f"{s.version:04d}", s.name, applied)
    return table
