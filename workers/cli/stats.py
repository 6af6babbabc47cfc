"""``jobtrail stats``: jobs by type and status, with completed jobs' duration percentiles."""

from __future__ import annotations

import typer
from rich.table import Table

import projections
from jobstore import JOB_STATUSES
from workers.cli import database, runtime


def register(app: typer.Typer) -> None:
    """Add the ``stats`` command to ``app``."""
    app.command("stats")(stats)


def stats(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show how many jobs each type has in each status, and how long they took."""
    settings = database.load_settings()

    async def main() -> projections.JobStats:
        async with database.open_database(settings) as db:
            await database.catch_up(db)
            return await projections.get_job_stats(db.pool)

    result = database.run(main)
    if as_json:
        runtime.print_json(result.to_json())
    elif result.total == 0:
        database.console().print("no jobs yet")
    else:
        database.console().print(_table(result))


def _table(result: projections.JobStats) -> Table:
    statuses = [s.value for s in JOB_STATUSES]
    table = Table(title=f"{result.total} job(s)", show_footer=True)
    table.add_column("type", footer="total", no_wrap=True)
    for status in statuses:
        table.add_column(status, justify="right", footer=_count(result.by_status.get(status, 0)))
    table.add_column("total", justify="right", footer=str(result.total))
    for name in ("p50", "p90", "p99"):
        table.add_column(name, justify="right")
    table.add_column("oldest pending", justify="right")
    table.add_column("on a limit", justify="right")
    for job_type, per_type in result.by_type.items():
        percentiles = per_type.durations.percentiles
        table.add_row(
            job_type,
            *(_count(per_type.by_status.get(status, 0)) for status in statuses),
            str(per_type.total),
            *(database.duration(percentiles.get(p)) for p in (50, 90, 99)),
            database.duration(per_type.pending.oldest_age_seconds),
            _count(per_type.pending.waiting_on_limit),
        )
    return table


def _count(value: int) -> str:
    return str(value) if value else "·"
