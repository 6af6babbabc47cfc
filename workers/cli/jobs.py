"""``jobtrail jobs list|show|replay|cancel``: find jobs, read their history, act on them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import jobstore
import projections
from jobstore import JOB_STATUSES, JobExecution, job_state, redaction
from workers.cli import database, enqueue, operator, runtime, timeline

jobs_app = typer.Typer(help="Jobs: list, show, replay and cancel.", no_args_is_help=True)

Status = Annotated[
    str | None, typer.Option(help=f"One of {', '.join(s.value for s in JOB_STATUSES)}.")
]
JobType = Annotated[str | None, typer.Option("--type", help="Job type, e.g. send-email.")]
UserId = Annotated[int | None, typer.Option(help="Jobs of this user.")]
OrganizationId = Annotated[int | None, typer.Option(help="Jobs of this organization.")]
CreatedFrom = Annotated[
    str | None, typer.Option(help="Created at or after this ISO 8601 time, e.g. 2026-01-31.")
]
CreatedTo = Annotated[str | None, typer.Option(help="Created at or before this ISO 8601 time.")]
ErrorContains = Annotated[
    str | None, typer.Option(help="Last error contains this text (any case).")
]
ScheduleId = Annotated[str | None, typer.Option(help="Jobs that runs of this schedule minted.")]
Source = Annotated[
    str | None,
    typer.Option(
        help="Where the job's current dispatch came from: "
        f"{', '.join(projections.JobFilter.SOURCES)}."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Raw = Annotated[
    bool,
    typer.Option("--raw", help="Show passwords, tokens, keys and card numbers unredacted."),
]


def register(app: typer.Typer) -> None:
    """Add the ``jobs`` command group to ``app``."""
    app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def list_(
    status: Status = None,
    job_type: JobType = None,
    user_id: UserId = None,
    organization_id: OrganizationId = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    error_contains: ErrorContains = None,
    schedule_id: ScheduleId = None,
    source: Source = None,
    limit: int = typer.Option(50, help="Jobs per page (1 to 500)."),
    cursor: str | None = typer.Option(None, help="The page after this one (from --json)."),
    as_json: AsJson = False,
    raw: Raw = False,
) -> None:
    """List jobs, newest first, with every filter of the read API."""
    settings = database.load_settings()
    filters = _filters(
        status=status,
        type=job_type,
        user_id=user_id,
        organization_id=organization_id,
        created_from=created_from,
        created_to=created_to,
        error_contains=error_contains,
        schedule_id=schedule_id,
        source=source,
    )

    async def main() -> projections.JobExecutionPage:
        with _option_names():
            job_filter = projections.JobFilter.from_strings(filters)
            async with database.open_database(settings) as db:
                await database.catch_up(db)
                page = await projections.list_job_executions(
                    db.pool, **dataclasses.asdict(job_filter), cursor=cursor, limit=limit
                )
                opened = await jobstore.EventStore(db.pool).keys.reveal_all(page.items)
                return dataclasses.replace(page, items=opened)  # personal data, for the operator

    page = database.run(main)
    if as_json:
        items = [_shown(item.model_dump(mode="json"), raw) for item in page.items]
        runtime.print_json({"items": items, "next_cursor": page.next_cursor})
        return
    out = database.console()
    if not page.items:
        out.print("no jobs match")
        return
    out.print(_list_table(page.items))
    if page.next_cursor is not None:
        out.print(f"more jobs: add --cursor {page.next_cursor}")


@jobs_app.command("show")
def show(
    job_id: str = typer.Argument(..., metavar="ID", help="The job's id."),
    as_json: AsJson = False,
    raw: Raw = False,
) -> None:
    """Show a job: its state, and a timeline of every event and attempt."""
    settings = database.load_settings()

    async def main() -> timeline.Job:
        async with database.open_database(settings) as db:
            store = jobstore.EventStore(db.pool)
            history = await projections.get_job_history(store, job_id)
            archived = False
            if not history:
                stream = job_state.stream_id(str(uuid.UUID(job_id)))
                history = await store.read_archived_stream(stream)
                archived = bool(history)
            if not history:
                raise jobstore.JobError(f"no job with id {job_id!r}", "JOB_NOT_FOUND", job_id)
            history = await store.keys.reveal_all(history)  # personal data, for the operator
            attempts = []
            if not archived:
                await database.catch_up(db)
                attempts = await store.keys.reveal_all(
                    await projections.get_job_attempts(db.pool, job_id)
                )
            state = job_state.fold(history)
            assert state is not None
            execution = JobExecution.from_state(state)
            return timeline.Job(execution, history, attempts, archived, raw)

    job = database.run(main)
    if as_json:
        runtime.print_json(job.to_json())
    else:
        timeline.print_job(database.console(), job)


@jobs_app.command("replay")
def replay(
    job_id: str | None = typer.Argument(
        None, metavar="ID", help="The job to replay; leave out and filter to replay many."
    ),
    reason: str | None = typer.Option(None, help="Why (kept in the job's history)."),
    payload: str | None = typer.Option(
        None, help="A corrected payload (JSON object) for one job, validated for its type."
    ),
    options: str | None = typer.Option(
        None,
        help="New options for one job (JSON: retries, delay, callback, failure_callback, "
        "headers); the rest stay as they were.",
    ),
    status: Status = None,
    job_type: JobType = None,
    user_id: UserId = None,
    organization_id: OrganizationId = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
    error_contains: ErrorContains = None,
    schedule_id: ScheduleId = None,
    source: Source = None,
    yes: bool = typer.Option(False, "--yes", "-y", help="Replay many without asking."),
    as_json: AsJson = False,
) -> None:
    """Dispatch a failed (or cancelled) job again, or every one the filters select."""
    filters = _filters(
        status=status,
        type=job_type,
        user_id=user_id,
        organization_id=organization_id,
        created_from=created_from,
        created_to=created_to,
        error_contains=error_contains,
        schedule_id=schedule_id,
        source=source,
    )
    if job_id is not None and filters:
        runtime.fail("give a job ID or filters, not both", database.BAD_INPUT)
    if job_id is None and (payload is not None or options is not None):
        runtime.fail(
            "--payload and --options replay one job (give its ID); bulk replay keeps payloads",
            database.BAD_INPUT,
        )
    new_payload = None if payload is None else enqueue.parse_payload(payload, "--payload")
    new_options = None if options is None else enqueue.parse_payload(options, "--options")
    if job_id is None and not filters:
        runtime.fail(
            "give a job ID, or filters such as --status failed --type send-email to replay many",
            database.BAD_INPUT,
        )
    settings = database.load_settings()
    if job_id is not None:
        _act(
            settings,
            job_id,
            "replayed",
            lambda d: d.replay_job(
                job_id, reason, payload=new_payload, options=new_options, actor=operator.actor()
            ),
            as_json,
        )
    else:
        _replay_many(settings, filters, reason, yes, as_json)


@jobs_app.command("cancel")
def cancel(
    job_id: str = typer.Argument(..., metavar="ID", help="The job to cancel."),
    reason: str | None = typer.Option(None, help="Why (kept in the job's history)."),
    as_json: AsJson = False,
) -> None:
    """Stop a job's future attempts (one already running still finishes, and says so)."""
    settings = database.load_settings()
    _act(
        settings,
        job_id,
        "cancelled",
        lambda d: d.cancel(job_id, reason, actor=operator.actor()),
        as_json,
    )


def _act(
    settings: jobstore.Settings,
    job_id: str,
    done: str,
    action: Callable[[jobstore.Dispatcher], Awaitable[int | jobstore.Cancelled]],
    as_json: bool,
) -> None:
    async def main() -> int | jobstore.Cancelled:
        registry = runtime.application_registry(settings)  # a replayed payload is checked
        policy = jobstore.AddressPolicy.from_settings(settings)
        async with database.open_database(settings) as db:
            dispatcher = jobstore.Dispatcher(jobstore.EventStore(db.pool), registry, policy)
            return await action(dispatcher)

    outcome = database.run(main)
    if isinstance(outcome, jobstore.Cancelled):  # a running attempt may still finish
        if as_json:
            runtime.print_json(
                {
                    "job_id": job_id,
                    "position": outcome.position,
                    "attempt_running": outcome.attempt_running,
                    "message": outcome.message,
                }
            )
        else:
            database.console().print(
                f"{outcome.message}: job [bold]{job_id}[/] (log position {outcome.position})"
            )
        return
    if as_json:
        runtime.print_json({"job_id": job_id, "position": outcome})
    else:
        database.console().print(f"{done} job [bold]{job_id}[/] (log position {outcome})")


def _replay_many(
    settings: jobstore.Settings,
    filters: dict[str, str],
    reason: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    bar = None if as_json else _bar()

    async def main() -> projections.ReplayOutcome:
        with _option_names():
            job_filter = projections.JobFilter.from_strings(filters).for_replay()
            async with database.open_database(settings) as db:
                await database.catch_up(db)
                count = await projections.count_replayable(db.pool, job_filter)
                if count == 0:
                    return projections.ReplayOutcome()
                if not yes:
                    question = f"Replay {count} {_describe(job_filter)}?"
                    await asyncio.to_thread(typer.confirm, question, abort=True, err=True)
                dispatcher = jobstore.Dispatcher(jobstore.EventStore(db.pool))
                with _confirmed(count):
                    return await _replay(db.pool, dispatcher, job_filter, reason, count, bar)

    outcome = database.run(main)
    if as_json:
        runtime.print_json(outcome.to_json())
        return
    out = database.console()
    if outcome.selected == 0:
        out.print("no failed or cancelled jobs match; nothing to replay")
        return
    out.print(
        f"replayed {outcome.count} of {outcome.selected} jobs (log position {outcome.position})"
    )
    if outcome.skipped:
        table = Table(title="skipped")
        table.add_column("job id", no_wrap=True)
        table.add_column("reason")
        for skipped_id, why in outcome.skipped.items():
            table.add_row(skipped_id, escape(why))
        out.print(table)


async def _replay(
    pool: asyncpg.Pool,
    dispatcher: jobstore.Dispatcher,
    job_filter: projections.JobFilter,
    reason: str | None,
    count: int,
    bar: Progress | None,
) -> projections.ReplayOutcome:
    """Replay the ``count`` jobs the operator confirmed (refused if that count changed)."""
    with bar or contextlib.nullcontext():
        task = bar.add_task("replaying", total=count) if bar is not None else None
        return await projections.replay_jobs(
            pool,
            dispatcher,
            job_filter,
            reason=reason,
            actor=operator.actor(),
            expected_count=count,
            progress=None
            if bar is None or task is None
            else lambda done, total: bar.update(task, completed=done, total=total),
        )


@contextlib.contextmanager
def _confirmed(count: int) -> Iterator[None]:
    """A selection that changed since it was confirmed is one clear line, exit 1."""
    try:
        yield
    except projections.CountMismatchError as exc:
        runtime.fail(
            f"{exc.count} job(s) match now, not the {count} confirmed; nothing replayed, "
            "run the command again"
        )


def _describe(job_filter: projections.JobFilter) -> str:
    """The jobs a filter selects, in words: 'failed jobs of type send-email'."""
    status = job_filter.status.value if job_filter.status else "failed or cancelled"
    words = [f"{status} job(s)"]
    if job_filter.type:
        words.append(f"of type {job_filter.type}")
    if job_filter.user_id:
        words.append(f"of user {job_filter.user_id}")
    if job_filter.organization_id:
        words.append(f"of organization {job_filter.organization_id}")
    if job_filter.created_from:
        words.append(f"created from {database.when(job_filter.created_from)}")
    if job_filter.created_to:
        words.append(f"created to {database.when(job_filter.created_to)}")
    if job_filter.error_contains:
        words.append(f"whose error contains {job_filter.error_contains!r}")
    if job_filter.schedule_id:
        words.append(f"of schedule {job_filter.schedule_id}")
    if job_filter.source:
        words.append(f"dispatched by {job_filter.source}")
    return " ".join(words)


def _filters(**given: Any) -> dict[str, Any]:
    """The filter options given, by their JobFilter names."""
    return {name: value for name, value in given.items() if value is not None}


@contextlib.contextmanager
def _option_names() -> Iterator[None]:
    """Name a bad filter by its command-line option (``--created-from``), exit 2."""
    try:
        yield
    except projections.InvalidFilterError as exc:
        if exc.parameter == "job_id":
            raise
        problem = str(exc).split(": ", 1)[-1]
        runtime.fail(f"--{exc.parameter.replace('_', '-')}: {problem}", database.BAD_INPUT)


def _shown(value: dict[str, Any], raw: bool) -> dict[str, Any]:
    return value if raw else dict(redaction.redact(value))


def _list_table(items: list[JobExecution]) -> Table:
    table = Table(title=f"{len(items)} job(s), newest first")
    table.add_column("id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("error")
    for e in items:
        style = timeline.STATUS_STYLE.get(e.status.value, "")
        table.add_row(
            e.job_id,
            e.job_type,
            f"[{style}]{e.status.value}[/]",
            str(e.attempts),
            database.when(e.created_at),
            database.duration(e.duration_seconds),
            timeline.short(redaction.redact(e.error), 60) if e.error else "",
        )
    return table


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
