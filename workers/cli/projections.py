"""``jobtrail projections status|rebuild``: how far the views got, and rebuilding them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import jobstore
import projections
from workers import supervisor
from workers.cli import database, relay, runtime

T = TypeVar("T")
TASK = "projections"
"""The host's background task that runs the projections (workers.app)."""
Status = tuple[list[projections.ProjectionStatus], jobstore.ReaderLag, list[supervisor.TaskReport]]

projections_app = typer.Typer(
    help="Projections (the views): show their status, rebuild them from the log.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``projections`` command group to ``app``."""
    app.add_typer(projections_app, name="projections")


@projections_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show each projection's position, lag behind the log, and error (exit 3 if stopped).

    Also what every follower of the log is held back by: committed events waiting behind
    a write transaction that is still running; and each host's projection runner: running,
    or restarting after a failure (since when, and the error; exit 3 too).
    """
    settings = runtime.load_settings()

    async def main() -> Status:
        async with database.open_database(settings) as db:  # says what to migrate
            states = await projections.projection_status(db.pool)
            lag = await projections.reader_lag(db.pool)
            return states, lag, await supervisor.task_reports(db.pool, [TASK])

    states, lag, reports = _run(main)
    if as_json:
        runtime.print_json(
            {
                "projections": [s.to_json() for s in states],
                "reader_lag": lag.to_json(),
                "hosts": [r.to_json() for r in reports],
            }
        )
    else:
        console = Console()
        console.print(_table(states))
        console.print(_lag_line(lag))
        console.print(relay.task_table("projection runner on each host", reports))
    restarting = any(r.state == "restarting" and not r.stale() for r in reports)
    if restarting or any(s.failure is not None for s in states):
        raise typer.Exit(code=3)


@projections_app.command("rebuild")
def rebuild(
    name: str | None = typer.Argument(None, help="One projection; all of them if left out."),
    batch_size: int = typer.Option(10_000, min=1, max=100_000, help="Events per batch."),
    wait: float = typer.Option(60.0, min=0, help="Seconds to wait for the leader to step down."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (no progress bar)."),
) -> None:
    """Replay the whole log into fresh tables and swap them in at once."""
    settings = runtime.load_settings()
    names = None if name is None else [name]

    async def main(progress: Any) -> projections.RebuildResult:
        async with database.open_database(settings) as db:  # says what to migrate
            return await projections.rebuild(
                db.pool,
                db.dsn,
                names,
                progress=progress,
                batch_size=batch_size,
                lock_timeout=wait,
            )

    if as_json:
        with projections.relaxed_gc():
            result = _run(lambda: main(None))
        runtime.print_json(_result_json(result))
        return
    with _bar() as bar, projections.relaxed_gc():
        task = bar.add_task("rebuilding", total=None)

        def advance(position: int, head: int) -> None:
            bar.update(task, completed=position, total=head)

        result = _run(lambda: main(advance))
    Console().print(
        f"rebuilt {', '.join(result.names)}: {result.events:,} events up to position "
        f"{result.position} in {result.seconds:.1f} s ({result.events_per_second:,.0f} events/s)"
    )


def _run(main: Callable[[], Awaitable[T]]) -> T:
    """runtime.run, with the projections' own errors as one clear line too."""
    try:
        return runtime.run(main)
    except projections.ProjectionError as exc:
        runtime.fail(str(exc))


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )


def _result_json(result: projections.RebuildResult) -> dict[str, Any]:
    return {
        "projections": result.names,
        "events": result.events,
        "position": result.position,
        "seconds": round(result.seconds, 3),
        "events_per_second": round(result.events_per_second),
    }


def _lag_line(lag: jobstore.ReaderLag) -> str:
    if lag.held_back_events == 0:
        return "readers held back: none"
    line = (
        f"readers held back: {lag.held_back_events:,} committed events for "
        f"{lag.held_back_seconds:.1f} s, behind a transaction still running"
    )
    if lag.oldest_transaction_pid is not None:
        line += f" (pid {lag.oldest_transaction_pid}, open {lag.oldest_transaction_seconds:.0f} s)"
    return line


def _table(states: list[projections.ProjectionStatus]) -> Table:
    table = Table(title="projections")
    table.add_column("name")
    table.add_column("position", justify="right")
    table.add_column("lag", justify="right")
    table.add_column("error")
    for s in states:
        failure = s.failure
        error = (
            ""
            if failure is None
            else f"stopped at {failure.position} ({failure.event_type}): {failure.error}"
        )
        table.add_row(s.name, str(s.position), str(s.lag), error)
    return table
