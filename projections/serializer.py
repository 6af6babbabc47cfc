"""The JSON shapes of the read/ops API (documented in ``openapi.py``)."""

from __future__ import annotations

from typing import Any

import orjson

from jobstore import JobExecution, RecordedEvent, redaction, schedule_events
from projections.attempt import AttemptRow


def dumps(value: Any) -> bytes:
    """``value`` as JSON (datetimes as RFC 3339, dataclasses as objects)."""
    return orjson.dumps(value)


def shown(value: dict[str, Any], raw: bool) -> dict[str, Any]:
    """``value`` as the API shows it: secrets redacted unless ``raw`` was asked for."""
    if raw:
        return value
    redacted: dict[str, Any] = redaction.redact(value)
    return redacted


def execution(item: JobExecution, raw: bool = False) -> dict[str, Any]:
    """A job execution (the seed's JobExecution fields)."""
    return shown(item.model_dump(mode="json"), raw)


def attempt(row: AttemptRow, raw: bool = False) -> dict[str, Any]:
    """One attempt of one dispatch."""
    return shown(_attempt(row), raw)


def _attempt(row: AttemptRow) -> dict[str, Any]:
    return {
        "dispatch": row.dispatch,
        "attempt": row.attempt,
        "outcome": str(row.outcome),
        "message_id": row.message_id,
        "started_at": _time(row.started_at),
        "finished_at": _time(row.finished_at),
        "duration_seconds": row.duration_seconds,
        "error_type": row.error_type,
        "error_message": row.error_message,
        "will_retry": row.will_retry,
        "abandoned": row.abandoned,
    }


def event(recorded: RecordedEvent, raw: bool = False) -> dict[str, Any]:
    """One event of a job's history."""
    return shown(_event(recorded), raw)


def _event(recorded: RecordedEvent) -> dict[str, Any]:
    return {
        "position": recorded.position,
        "version": recorded.version,
        "type": recorded.type_name,
        "schema_version": recorded.event.schema_version,
        "data": recorded.event.to_json_data(),
        "metadata": recorded.metadata,
        "recorded_at": recorded.recorded_at.isoformat(),
    }


def schedule(state: schedule_events.ScheduleState, raw: bool = False) -> dict[str, Any]:
    """A recurring job."""
    return shown(_schedule(state), raw)


def _schedule(state: schedule_events.ScheduleState) -> dict[str, Any]:
    return {
        "schedule_id": state.schedule_id,
        "job_type": state.job_type,
        "cron": state.cron,
        "payload": state.payload,
        "metadata": state.metadata,
        "retries": state.retries,
        "timeout_seconds": state.timeout,
        "paused": state.paused,
        "created_at": state.created_at.isoformat(),
    }


def _time(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())
