"""A job's history for people (a rich timeline of every event and attempt) and as JSON."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import jobstore
from jobstore import JobExecution, RecordedEvent, redaction, tracing
from jobstore import actor as actor_of
from workers import history
from workers.cli import database

STATUS_STYLE: Final = {
    "pending": "cyan",
    "processing": "blue",
    "retrying": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


@dataclass(frozen=True, slots=True)
class Job:
    """A job as ``jobs show`` presents it: its state, events, attempts, whether archived."""

    execution: JobExecution
    history: list[RecordedEvent]
    attempts: list[Any]
    archived: bool
    raw: bool = False
    """Show secret-looking values as recorded (``--raw``) instead of redacted."""

    def to_json(self) -> dict[str, Any]:
        """The job as JSON-compatible values."""
        value = {
            "job": self.execution.model_dump(mode="json"),
            "archived": self.archived,
            "traces": tracing.trace_ids(r.metadata for r in self.history),
            "events": [_event_json(r) for r in self.history],
            "attempts": [_attempt_json(a) for a in self.attempts],
        }
        return value if self.raw else dict(redaction.redact(value))


def _event_json(recorded: RecordedEvent) -> dict[str, Any]:
    return {
        "position": recorded.position,
        "version": recorded.version,
        "type": recorded.event.type_name,
        "data": recorded.event.to_json_data(),
        "actor": actor_of.of(recorded.metadata),
        "trace_id": tracing.trace_id_of(recorded.metadata.get(tracing.TRACEPARENT)),
        "recorded_at": recorded.recorded_at.isoformat(),
    }


def _attempt_json(row: Any) -> dict[str, Any]:
    return {
        "dispatch": row.dispatch,
        "attempt": row.attempt,
        "outcome": str(row.outcome),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "duration_seconds": row.duration_seconds,
        "error_type": row.error_type,
        "error_message": row.error_message,
        "will_retry": row.will_retry,
        "abandoned": row.abandoned,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def print_job(out: Console, job: Job) -> None:
    """Print the job's state, its timeline of events, and its attempts."""
    e = job.execution
    style = STATUS_STYLE.get(e.status.value, "")
    out.print(f"job [bold]{e.job_id}[/]: {e.job_type}, [{style}]{e.status.value}[/]")
    if job.archived:
        out.print(
            "[yellow]archived[/]: retention moved this job's events to the archive; "
            "the views and `jobs list` no longer show it"
        )
    out.print(
        f"dispatches {e.dispatch} (replays {e.replay_count}), attempts {e.attempts}, "
        f"retries per dispatch {e.max_retries}; created {database.when(e.created_at)}"
    )
    traces = tracing.trace_ids(r.metadata for r in job.history)
    if traces:
        out.print(f"trace: {', '.join(traces)}", highlight=False)
    shown = _shown(job.raw)
    if e.error:
        out.print(f"last error: [red]{short(shown(e.error), 300)}[/]", highlight=False)
    out.print(f"payload: {short(shown(e.payload), 200)}", highlight=False)
    out.print(_timeline(job.history, shown))
    if job.attempts:
        out.print(_attempts_table(job.attempts, shown))


def _shown(raw: bool) -> Callable[[Any], Any]:
    """What the timeline prints of a value: redacted, unless ``--raw``."""
    return (lambda value: value) if raw else redaction.redact


def _timeline(history: list[RecordedEvent], shown: Callable[[Any], Any]) -> Table:
    table = Table(title="timeline")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("position", justify="right")
    table.add_column("event", no_wrap=True)
    table.add_column("dispatch/attempt", justify="center")
    table.add_column("details")
    for recorded in history:
        name, attempt, details = _describe_event(recorded.event, shown)
        who = actor_of.of(recorded.metadata)
        if who:
            details = f"{details}; by {escape(who)}" if details else f"by {escape(who)}"
        table.add_row(
            database.when(recorded.recorded_at, precise=True),
            str(recorded.position),
            name,
            attempt,
            details,
        )
    return table


_COLOURS = {
    "dispatched": "cyan",
    "started": "blue",
    "completed": "green",
    "attempt-failed": "yellow",
    "failed": "red",
    "cancelled": "magenta",
    "notified": "cyan",
    "outcome-late": "yellow",
}


def _describe_event(event: jobstore.Event, shown: Callable[[Any], Any]) -> tuple[str, str, str]:
    """An event as (name, dispatch/attempt, details) for the timeline, in rich markup."""
    described = history.describe(event, shown)
    colour = _COLOURS.get(described.kind)
    name = f"[{colour}]{escape(described.label)}[/]" if colour else escape(described.label)
    return name, described.step, escape(described.details)


def _attempts_table(attempts: list[Any], shown: Callable[[Any], Any]) -> Table:
    table = Table(title="attempts")
    table.add_column("dispatch/attempt", justify="center")
    table.add_column("outcome")
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("error")
    for a in attempts:
        error = f"{a.error_type}: {a.error_message}" if a.error_type else (a.error_message or "")
        error = short(shown(error), 300)
        table.add_row(
            f"{a.dispatch}/{a.attempt}",
            str(a.outcome),
            database.when(a.started_at, precise=True),
            database.duration(a.duration_seconds),
            error,
        )
    return table


def short(value: object, width: int) -> str:
    """``value`` as text (JSON unless a string), cut to ``width``, safe from rich markup."""
    return escape(history.short(value, width))
