"""``jobtrail events tail [--follow]``: the event log's latest events, or the log live."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Final

import orjson
import typer
from rich.console import Console
from rich.markup import escape

import jobstore
from jobstore import RecordedEvent, redaction
from workers.cli import database

events_app = typer.Typer(
    help="The event log: its latest events, or follow it live.", no_args_is_help=True
)

_DATA_WIDTH: Final = 100


def register(app: typer.Typer) -> None:
    """Add the ``events`` command group to ``app``."""
    app.add_typer(events_app, name="events")


@events_app.command("tail")
def tail(
    from_position: int | None = typer.Option(
        None, "--from", metavar="POSITION", min=1, help="Start at this log position."
    ),
    limit: int = typer.Option(
        20, "--limit", "-n", min=1, max=10_000, help="How many events (without --follow)."
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Go on printing events as they commit, until Ctrl-C."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON Lines, one event a line."),
) -> None:
    """Print the last events of the log (or those from --from); --follow keeps going live."""
    settings = database.load_settings()
    emit = _json_line if as_json else _human_line(database.console())

    async def main() -> None:
        async with database.open_database(settings) as db:
            store = jobstore.EventStore(db.pool)
            if from_position is not None:
                start = from_position - 1
                events = [] if follow else await store.read_all(start, limit)
            else:
                events = await _last(store, limit)
                start = events[0].position - 1 if events else await store.last_position()
            if follow:
                # Followed by the followers' rule (jobstore.store), from the event before
                # the first one to show: the subscription prints them, and then any event
                # that commits later, whatever its position, never one twice.
                await _follow(store, db.dsn, await store.cursor_of(start), emit)
                return
            for recorded in events:
                emit(recorded)

    database.run(main)


async def _last(store: jobstore.EventStore, count: int) -> list[RecordedEvent]:
    """The last ``count`` events (positions have gaps where a transaction rolled back)."""
    head = await store.last_position()
    span = count
    while True:
        after = max(head - span, 0)
        events = await store.read_all(after, span)
        if len(events) >= count or after == 0:
            return events[-count:]
        span *= 2


async def _follow(
    store: jobstore.EventStore,
    dsn: str,
    after: jobstore.Cursor,
    emit: Callable[[RecordedEvent], None],
) -> None:
    """Emit every event after ``after`` as it commits, until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with jobstore.Subscription(store, dsn, after=after) as subscription:

            async def consume() -> None:
                async for recorded in subscription:
                    emit(recorded)

            consuming = asyncio.create_task(consume(), name="follow the log")
            stopping = asyncio.create_task(stop.wait(), name="wait for Ctrl-C")
            try:
                await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (consuming, stopping):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consuming
                await asyncio.gather(stopping, return_exceptions=True)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _json_line(recorded: RecordedEvent) -> None:
    line = {
        "position": recorded.position,
        "stream_id": recorded.stream_id,
        "version": recorded.version,
        "type": recorded.event.type_name,
        "recorded_at": recorded.recorded_at.isoformat(),
        "data": recorded.event.to_json_data(),
        "metadata": recorded.metadata,
    }
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()


def _human_line(out: Console) -> Callable[[RecordedEvent], None]:
    def emit(recorded: RecordedEvent) -> None:
        out.print(
            f"[dim]{recorded.position:>8}[/]  {database.when(recorded.recorded_at, precise=True)}"
            f"  [cyan]{escape(recorded.stream_id)}[/]  [bold]{recorded.event.type_name}[/]"
            f"  {_short(recorded)}",
            highlight=False,
        )
        out.file.flush()

    return emit


def _short(recorded: RecordedEvent) -> str:
    """The event's data on one line: no job id its stream already names, secrets redacted."""
    data = {
        key: value
        for key, value in recorded.event.to_json_data().items()
        if not (key == "job_id" and recorded.stream_id == f"job-{value}")
    }
    text = orjson.dumps(redaction.redact(data)).decode()
    return escape(text if len(text) <= _DATA_WIDTH else text[: _DATA_WIDTH - 1] + "…")
