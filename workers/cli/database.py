"""What the job commands share: the database opened once, fresh views, and errors as one line.

Bad input (an unknown job type, an invalid payload or filter) exits 2; every other error
jobtrail knows exits 1 (``runtime.run``).  The views trail the log by the projection
lag, so a command that reads them first makes sure they are caught up (``catch_up``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Final, NoReturn, TypeVar

import typer
from rich.console import Console

import jobstore
import projections
from workers import logs
from workers.cli import runtime

T = TypeVar("T")

BAD_INPUT: Final = 2
CATCH_UP_SECONDS: Final = 10.0
"""How long a read spends catching the views up itself before it shows them as they are."""
PIPE_WIDTH: Final = 160


def load_settings() -> jobstore.Settings:
    """The settings; the library's info lines stay quiet unless JOBTRAIL_LOG_LEVEL asks."""
    settings = runtime.load_settings()
    if "log_level" not in settings.model_fields_set:
        logs.configure(level=logging.WARNING)
    return settings


@asynccontextmanager
async def open_database(settings: jobstore.Settings) -> AsyncIterator[jobstore.Database]:
    """Open DATABASE_URL (else the embedded PostgreSQL), its schema checked to be current."""
    async with jobstore.open_database(settings) as db:
        if db.embedded:
            await jobstore.migrate(db.dsn)  # our own local database: bring it up to date
        else:
            pending = [s for s in await jobstore.status(db.dsn) if s.applied_at is None]
            if pending:
                runtime.fail(
                    f"the database at DATABASE_URL lacks {len(pending)} jobtrail migration(s); "
                    "run `jobtrail db migrate` first"
                )
        yield db


def run(main: Callable[[], Awaitable[T]]) -> T:
    """``runtime.run``, with bad input exiting 2 and the projections' errors as one line."""

    async def guarded() -> T:
        try:
            return await main()
        except jobstore.JobValidationError as exc:
            report_invalid(exc)
        except jobstore.JobError as exc:
            if exc.code == "UNKNOWN_JOB_TYPE":
                runtime.fail(exc.message, BAD_INPUT)
            raise
        except projections.InvalidFilterError as exc:
            runtime.fail(str(exc), BAD_INPUT)
        except projections.ProjectionError as exc:
            runtime.fail(str(exc))

    return runtime.run(guarded)


def report_invalid(exc: jobstore.JobValidationError) -> NoReturn:
    """Print each validation problem on its own line and exit 2."""
    problems = exc.validation_errors
    headline = str(exc) if not problems else exc.message.split(":", 1)[0]
    typer.secho(f"error: {headline}", err=True, fg=typer.colors.RED)
    for problem in problems:
        typer.secho(f"  {problem}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=BAD_INPUT)


async def catch_up(db: jobstore.Database) -> None:
    """Make the views current with the log's head, or warn (one line) that they may be stale.

    A host's projection runner keeps them current; without one, a runner started here
    catches them up.  Both at once: this runner only *tries* the projections' leadership
    (it never makes a host step down), so with a host running it waits while the host
    applies the log, and without one no time is lost waiting for a host first.  Either
    way it gives up after ``CATCH_UP_SECONDS`` and shows the views as they are.
    """
    head = await jobstore.EventStore(db.pool).last_position()
    try:
        await projections.wait_for_position(db.pool, head, timeout=0)
        return
    except projections.ProjectionTimeoutError:
        pass
    except projections.ProjectionFailed as exc:
        warn(f"the views may be stale: {exc}")
        return
    runner = projections.ProjectionRunner(db.pool, db.dsn, leader_retry=0.2)
    running = asyncio.create_task(runner.run_until_caught_up(), name="catch up the views")
    waiting = asyncio.create_task(
        projections.wait_for_position(db.pool, head, timeout=CATCH_UP_SECONDS),
        name="wait for the views",
    )
    try:
        done, _ = await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (running, waiting):
            task.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)
    failures = [task.exception() for task in done]
    if any(failure is None for failure in failures):
        return  # the views got there, through this runner or the host's
    failure = failures[0]
    if isinstance(failure, projections.ProjectionError):
        warn(f"the views may be stale: {failure}")
    elif failure is not None:
        raise failure


def warn(message: str) -> None:
    """Print ``warning: message`` to stderr, in yellow."""
    typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)


def console() -> Console:
    """A rich console for stdout; off a terminal, wide enough not to cut ids in tables.

    Lines it prints never wrap (``soft_wrap``): an id or a cursor stays whole for a copy.
    """
    out = Console(soft_wrap=True)
    if out.is_terminal or "COLUMNS" in os.environ:
        return out
    return Console(soft_wrap=True, width=PIPE_WIDTH)


def when(moment: datetime | None, *, precise: bool = False) -> str:
    """A time for people: UTC, to the second (or millisecond); empty for None."""
    if moment is None:
        return ""
    text = moment.astimezone(UTC).isoformat(
        sep=" ", timespec="milliseconds" if precise else "seconds"
    )
    return text.removesuffix("+00:00") + "Z"


def duration(seconds: float | None) -> str:
    """A duration for people: milliseconds under a second, else seconds; empty for None."""
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
