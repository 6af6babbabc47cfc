"""A job's events described for people: one description, shown by the CLI and the dashboard.

``describe`` says what an event was in words: its kind (a stable name the CLI colours and
the dashboard styles), a label, the dispatch/attempt it concerns, and details.  Values
that may hold secrets pass through ``shown`` (the redaction rule, unless raw was asked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, assert_never

import orjson

from jobstore import Event, job_events

Shown = Callable[[Any], Any]
"""How a value that may hold secrets is shown (masked, or raw for an admin)."""
DETAILS_WIDTH = 300


@dataclass(frozen=True, slots=True)
class Described:
    """One event in words."""

    kind: str
    label: str
    step: str
    details: str


def short(value: object, width: int) -> str:
    """``value`` as text (JSON unless a string), cut to ``width`` characters."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def seconds(value: float | None) -> str:
    """A duration for people: milliseconds under a second, else seconds; empty for None."""
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def describe(event: Event, shown: Shown) -> Described:
    """``event`` in words (an event of another stream is shown by its type and data)."""
    if not job_events.is_job_event(event):
        return Described("other", event.type_name, "", short(shown(event.to_json_data()), 80))
    match event:
        case job_events.JobDispatched():
            details = f"from {event.source}, retries {event.options.retries}"
            if event.options.not_before:
                details += ", delayed"
            if event.reason:
                details += f"; reason: {short(shown(event.reason), 200)}"
            return Described("dispatched", "dispatched", f"{event.dispatch}", details)
        case job_events.JobStarted():
            message = f"message {short(event.message_id, 80)}" if event.message_id else ""
            return Described("started", "started", f"{event.dispatch}/{event.attempt}", message)
        case job_events.JobCompleted():
            details = f"took {seconds(event.duration_seconds)}"
            if event.result is not None:
                details += f"; result {short(shown(event.result), 80)}"
            return Described("completed", "completed", f"{event.dispatch}/{event.attempt}", details)
        case job_events.JobAttemptFailed():
            outcome = "abandoned" if event.abandoned else "failed"
            then = "will retry" if event.will_retry else "no retry"
            took = f", after {seconds(event.duration_seconds)}" if event.duration_seconds else ""
            error = short(shown(f"{event.error_type}: {event.error_message}"), DETAILS_WIDTH)
            step = f"{event.dispatch}/{event.attempt}"
            return Described(
                "attempt-failed", f"attempt {outcome}", step, f"{error} ({then}{took})"
            )
        case job_events.JobFailed():
            step = f"{event.dispatch}/{event.attempt}" if event.attempt else f"{event.dispatch}"
            text = event.reason
            if event.error_message and event.error_message != event.reason:
                text += f"; {event.error_type or 'Error'}: {event.error_message}"
            return Described("failed", "failed", step, short(shown(text), DETAILS_WIDTH))
        case job_events.JobCancelled():
            reason = short(shown(event.reason or ""), 200)
            return Described("cancelled", "cancelled", f"{event.dispatch}", reason)
        case job_events.JobNotified():
            answered = f"{event.result}" + (f" ({event.status})" if event.status else "")
            details = short(shown(f"{event.kind} callback to {event.url}: {answered}"), 300)
            return Described("notified", "notified", f"{event.dispatch}", details)
        case job_events.JobHeartbeat():
            until = datetime.fromtimestamp(event.lease_until, UTC).strftime("%H:%M:%S")
            step = f"{event.dispatch}/{event.attempt}"
            return Described("heartbeat", "heartbeat", step, f"lease extended to {until} UTC")
        case job_events.JobOutcomeLate():
            if event.reported == "completed":
                said = f"completed after {seconds(event.duration_seconds)}"
            else:
                said = short(shown(f"failed: {event.error_type}: {event.error_message}"), 200)
            details = f"handler {said}; not counted: {short(event.closed, 200)}"
            step = f"{event.dispatch}/{event.attempt}"
            return Described("outcome-late", "late outcome", step, details)
        case _:
            assert_never(event)
