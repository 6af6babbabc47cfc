"""A job's history as the job page draws it: events with the state after each, and attempts
as bars whose lengths are their durations, to one scale."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from jobstore import JobState, RecordedEvent, job_events, job_state
from jobstore import actor as actor_of
from workers import history

WIDTH: Final = 1000
"""The drawing's width in SVG units; offsets and durations are scaled into it."""
ROW: Final = 22


@dataclass(frozen=True, slots=True)
class Entry:
    """One event of the job, described, with the job's status right after it."""

    position: int
    version: int
    recorded_at: datetime
    kind: str
    label: str
    step: str
    details: str
    actor: str | None
    status_after: str
    traceback: str | None = None
    message_id: str | None = None


@dataclass(slots=True)
class Bar:
    """One attempt, drawn from its start for its duration (to now while it runs)."""

    dispatch: int
    attempt: int
    start: float
    length: float
    outcome: str
    message_id: str | None
    x: float = 0.0
    width: float = 0.0
    y: int = 0

    @property
    def label(self) -> str:
        """``dispatch/attempt outcome``."""
        return f"{self.dispatch}/{self.attempt} {self.outcome}"


@dataclass(slots=True)
class Timeline:
    """Everything the job page draws of a history."""

    entries: list[Entry]
    bars: list[Bar]
    span: float
    states: list[JobState] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)

    @property
    def height(self) -> int:
        """The drawing's height in SVG units."""
        return ROW * (len(self.bars) + 1) + 8


Shown = Callable[[Any], Any]


def build(history: Sequence[RecordedEvent], shown: Shown, now: datetime) -> Timeline:
    """The timeline of a job's events (``shown`` masks values the page may not show)."""
    entries: list[Entry] = []
    states: list[JobState] = []
    bars: dict[tuple[int, int], Bar] = {}
    state: JobState | None = None
    start = history[0].recorded_at if history else now
    marks: list[tuple[float, str]] = []
    for recorded in history:
        state = job_state.evolve(state, recorded)
        states.append(state)
        offset = (recorded.recorded_at - start).total_seconds()
        entry = _entry(recorded, shown, state.status.value)
        entries.append(entry)
        marks.append((offset, entry.kind))
        _track(bars, recorded.event, offset)
    finished = state is not None and state.status.value in ("completed", "failed", "cancelled")
    end = (history[-1].recorded_at if finished and history else now) - start
    span = max(end.total_seconds(), 0.001)
    timeline = Timeline(entries, list(bars.values()), span, states, marks)
    for row, bar in enumerate(timeline.bars, start=1):
        if bar.outcome == "running":
            bar.length = max(span - bar.start, 0.0)
        bar.x = round(bar.start / span * WIDTH, 1)
        bar.width = round(max(bar.length / span * WIDTH, 2.0), 1)
        bar.y = row * ROW
    timeline.marks = [(round(o / span * WIDTH, 1), k) for o, k in marks]
    return timeline


def _track(bars: dict[tuple[int, int], Bar], event: Any, offset: float) -> None:
    if isinstance(event, job_events.JobStarted):
        bars[(event.dispatch, event.attempt)] = Bar(
            event.dispatch, event.attempt, offset, 0.0, "running", event.message_id
        )
    elif isinstance(event, job_events.JobCompleted | job_events.JobAttemptFailed):
        bar = bars.get((event.dispatch, event.attempt))
        if bar is None:
            return
        took = event.duration_seconds
        bar.length = took if took is not None else max(offset - bar.start, 0.0)
        if isinstance(event, job_events.JobCompleted):
            bar.outcome = "completed"
        else:
            bar.outcome = "abandoned" if event.abandoned else "failed"
        bar.start = max(offset - bar.length, bar.start)


def _entry(recorded: RecordedEvent, shown: Shown, status: str) -> Entry:
    event = recorded.event
    kind, label, step, details = _describe(event, shown)
    return Entry(
        position=recorded.position,
        version=recorded.version,
        recorded_at=recorded.recorded_at,
        kind=kind,
        label=label,
        step=step,
        details=details,
        actor=actor_of.of(recorded.metadata),
        status_after=status,
        traceback=shown(event.traceback)
        if isinstance(event, job_events.JobAttemptFailed) and event.traceback
        else None,
        message_id=event.message_id if isinstance(event, job_events.JobStarted) else None,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _describe(event: Any, shown: Shown) -> tuple[str, str, str, str]:
    """(kind, label, dispatch/attempt, details) of one event (:mod:`workers.history`)."""
    described = history.describe(event, shown)
    return described.kind, described.label, described.step, described.details
