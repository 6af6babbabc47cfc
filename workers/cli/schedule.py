"""``jobtrail schedule create|list|pause|resume|delete``: recurring jobs, kept as events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import typer
from rich.table import Table

import jobstore
from jobstore import schedule_events
from workers.cli import database, enqueue, operator, runtime

schedule_app = typer.Typer(
    help="Recurring jobs: create, list, pause, resume and delete schedules.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``schedule`` command group to ``app``."""
    app.add_typer(schedule_app, name="schedule")


@schedule_app.command("create")
def create(
    job_type: str = typer.Argument(..., metavar="TYPE", help="Job type, e.g. cleanup-old-data."),
    cron: str = typer.Option(
        ..., metavar="EXPR", help="Five-field cron, e.g. '0 3 * * *' (CRON_TZ=Zone allowed)."
    ),
    payload: str = typer.Option("{}", metavar="JSON", help="Each run's payload: a JSON object."),
    user_id: int | None = typer.Option(None, help="The user the runs are for."),
    organization_id: int | None = typer.Option(None, help="The organization the runs are for."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Schedule a recurring job; the relay creates it in QStash. Prints the schedule id."""
    data = enqueue.parse_payload(payload)
    settings = database.load_settings()
    registry = enqueue.application_registry(settings)
    metadata = {
        name: value
        for name, value in (("user_id", user_id), ("organization_id", organization_id))
        if value is not None
    }

    async def main() -> str:
        registry.get(job_type)
        jobstore.validate_cron(cron)
        async with database.open_database(settings) as db:
            policy = jobstore.AddressPolicy.from_settings(settings)
            dispatcher = jobstore.Dispatcher(jobstore.EventStore(db.pool), registry, policy)
            return await dispatcher.schedule(job_type, cron, data, metadata, actor=operator.actor())

    schedule_id = database.run(main)
    if as_json:
        runtime.print_json({"schedule_id": schedule_id})
    else:
        database.console().print(f"scheduled {job_type} at '{cron}': [bold]{schedule_id}[/]")


@schedule_app.command("list")
def list_(
    include_deleted: bool = typer.Option(False, "--all", help="Include deleted schedules."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show every schedule: id, type, cron, paused, created (--json: payloads, opened)."""
    settings = database.load_settings()

    async def main() -> list[schedule_events.ScheduleState]:
        async with database.open_database(settings) as db:
            store = jobstore.EventStore(db.pool)
            listed = await jobstore.Dispatcher(store).schedules.list(
                include_deleted=include_deleted
            )
            return await store.keys.reveal_all(listed)  # the operator reads personal fields

    states = database.run(main)
    if as_json:
        runtime.print_json({"schedules": [_json(s) for s in states]})
    elif not states:
        database.console().print("no schedules")
    else:
        database.console().print(_table(states))


@schedule_app.command("pause")
def pause(schedule_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Stop a schedule firing until it is resumed."""
    who = operator.actor()
    _change(schedule_id, "paused", lambda d: d.schedules.pause(schedule_id, actor=who))


@schedule_app.command("resume")
def resume(schedule_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Let a paused schedule fire again."""
    _change(
        schedule_id, "resumed", lambda d: d.schedules.resume(schedule_id, actor=operator.actor())
    )


@schedule_app.command("delete")
def delete(schedule_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Delete a schedule for good."""
    _change(
        schedule_id, "deleted", lambda d: d.schedules.delete(schedule_id, actor=operator.actor())
    )


def _change(
    schedule_id: str, done: str, change: Callable[[jobstore.Dispatcher], Awaitable[None]]
) -> None:
    settings = database.load_settings()

    async def main() -> None:
        async with database.open_database(settings) as db:
            dispatcher = jobstore.Dispatcher(jobstore.EventStore(db.pool))
            await change(dispatcher)

    database.run(main)
    database.console().print(f"schedule {schedule_id} {done}")


def _json(state: schedule_events.ScheduleState) -> dict[str, Any]:
    return {
        "schedule_id": state.schedule_id,
        "job_type": state.job_type,
        "cron": state.cron,
        "payload": state.payload,
        "metadata": state.metadata,
        "paused": state.paused,
        "deleted": state.deleted,
        "created_at": state.created_at.isoformat(),
    }


def _table(states: list[schedule_events.ScheduleState]) -> Table:
    table = Table(title="schedules")
    table.add_column("id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("cron", no_wrap=True)
    table.add_column("paused")
    table.add_column("created", no_wrap=True)
    for s in states:
        paused = "deleted" if s.deleted else ("yes" if s.paused else "no")
        table.add_row(s.schedule_id, s.job_type, s.cron, paused, database.when(s.created_at))
    return table
