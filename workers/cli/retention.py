"""``jobtrail retention status``: what is kept, archived, purged and when, the next run."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table

from workers import retention
from workers.cli import database, runtime

retention_app = typer.Typer(
    help="Retention: what the log keeps, what is archived and purged, the next run.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``retention`` command group to ``app``."""
    app.add_typer(retention_app, name="retention")


@retention_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show what is kept for how long, what is archived and purged, and the next run.

    The windows shown are this environment's settings (JOBTRAIL_RETENTION_DAYS,
    JOBTRAIL_ARCHIVE_DAYS, …): run it with the hosts' configuration.
    """
    settings = database.load_settings()

    async def main() -> retention.RetentionStatus:
        async with database.open_database(settings) as db:
            await database.catch_up(db)
            return await retention.status(db.pool, settings)

    result = database.run(main)
    if as_json:
        runtime.print_json(result.to_json())
    else:
        database.console().print(_table(result))


def _days(days: int | None, off: str) -> str:
    return off if not days else f"{days} day(s)"


def _at(moment: datetime | None) -> str:
    return database.when(moment) if moment is not None else "never"


def _table(s: retention.RetentionStatus) -> Table:
    table = Table(title="retention", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value")
    purge = (
        f"after {s.archive_days} day(s) in the archive, exported to {s.archive_export_dir}"
        if s.archive_days and s.archive_export_dir
        else "off (archived events are kept)"
    )
    rows = [
        ("finished jobs kept in the log", _days(s.retention_days, "forever (retention off)")),
        ("archived events purged", purge),
        ("export-data files kept", _days(s.export_keep_days, "forever")),
        ("generate-report files kept", _days(s.report_keep_days, "forever")),
        ("jobs in the log (unfinished)", f"{s.jobs:,} ({s.unfinished_jobs:,})"),
        ("oldest job in the log", database.when(s.oldest_job_at)),
        ("finished jobs due for archiving", f"{s.due_jobs:,}"),
        ("archived events", f"{s.archived_events:,}"),
        (
            "archived between",
            f"{database.when(s.oldest_archived_at)} … {database.when(s.newest_archived_at)}",
        ),
        ("archived events due for purging", f"{s.due_purge_events:,}"),
        ("jobs archived by the schedule", f"{s.archived_jobs_by_schedule:,}"),
        ("events purged, last at", f"{s.purged_events:,}, {_at(s.last_purge_at)}"),
        ("export files removed, last at", f"{s.removed_files:,}, {_at(s.last_removal_at)}"),
    ]
    last = s.last_run
    if last is not None:
        outcome = last["error"] or "ok"
        if last["finished_at"] is None:
            outcome = "running"
        rows.append(
            (
                "last run",
                f"{database.when(last['started_at'])} on {last['host']}: "
                f"{last['archived_jobs']:,} archived, {last['purged_events']:,} purged, "
                f"{last['removed_files']:,} files removed; {outcome}",
            )
        )
    else:
        rows.append(("last run", "never"))
    if not s.enabled:
        nxt = "off"
    elif s.next_run_at is None:
        nxt = f"as soon as a host runs `jobtrail serve`, then every {s.interval_seconds:g} s"
    else:
        nxt = f"{database.when(s.next_run_at)} (every {s.interval_seconds:g} s)"
    rows.append(("next run", nxt))
    for name, value in rows:
        table.add_row(name, value)
    return table
