"""The wire envelope of a delivery, written by the relay and parsed by the host, side by side.

A job's dispatch travels as ``{"job_id", "dispatch", "type", "payload", "metadata"}``; a
scheduled run as ``{"schedule_id", "type", "payload", "metadata"}`` (DESIGN.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from jobstore import tracing
from jobstore.ids import is_uuid
from jobstore.job_events import JobDispatched

# A scheduled run's job id is derived from its QStash message id, so a duplicate delivery
# of the same run maps to the same job (the host confirms the id with QStash first).
_SCHEDULED_RUN_NAMESPACE = uuid.UUID("0b5c7f6e-9a43-4f3e-8f8b-1d2f1c6a9e01")


FAILURE_CALLBACK_PATH = "/_jobtrail/qstash/failure"
"""Where QStash reports a message it gave up on (every published message names it)."""
NOTIFY_PATH = "/_jobtrail/notify"
"""Where the notifier's messages come back to the host, which calls the job's callback."""


class EnvelopeError(Exception):
    """A signed request that cannot be tied to a job."""


def job_body(event: JobDispatched, trace: str | None = None) -> dict[str, Any]:
    """The body the relay publishes for a dispatch (``trace``: its publish span's context)."""
    body = {
        "job_id": event.job_id,
        "dispatch": event.dispatch,
        "type": event.job_type,
        "payload": event.payload,
        "metadata": event.metadata,
    }
    if trace is not None:
        body["trace"] = trace
    return body


def scheduled_body(
    schedule_id: str, job_type: str, payload: dict[str, Any], metadata: dict[str, Any]
) -> dict[str, Any]:
    """The body QStash sends for every run of a schedule."""
    return {"schedule_id": schedule_id, "type": job_type, "payload": payload, "metadata": metadata}


@dataclass(frozen=True, slots=True)
class JobDelivery:
    """``{"job_id", "dispatch", "type", "payload", "metadata"}``: one dispatch of a job."""

    job_id: str
    dispatch: int
    type: str
    trace: str | None = None  # a W3C traceparent (tracing.py); anything else is ignored


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """``{"schedule_id", "type", "payload", "metadata"}``: a run QStash's schedule fired."""

    schedule_id: str
    type: str
    payload: dict[str, Any]
    metadata: dict[str, Any]

    def job_id(self, message_id: str) -> str:
        """The id of the job this run becomes (stable across duplicate deliveries)."""
        return str(uuid.uuid5(_SCHEDULED_RUN_NAMESPACE, message_id))


def parse(body: bytes) -> JobDelivery | ScheduledRun:
    """Parse a delivery body; EnvelopeError says what is missing or malformed."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError("body must be a JSON object (the jobtrail envelope)")
    if "schedule_id" in data:
        return _scheduled(data)
    job_id, dispatch = data.get("job_id"), data.get("dispatch")
    if not isinstance(job_id, str) or not is_uuid(job_id):
        raise EnvelopeError(f"job_id must be a UUID string, got {job_id!r:.80}")
    if not isinstance(dispatch, int) or isinstance(dispatch, bool) or dispatch < 1:
        raise EnvelopeError(f"dispatch must be a whole number >= 1, got {dispatch!r:.40}")
    trace = data.get("trace")
    trace = trace if tracing.trace_id_of(trace) is not None else None
    return JobDelivery(job_id, dispatch, str(data.get("type", "")), trace)


def _scheduled(data: dict[str, Any]) -> ScheduledRun:
    schedule_id, job_type = data.get("schedule_id"), data.get("type")
    payload, metadata = data.get("payload", {}), data.get("metadata", {})
    if not isinstance(schedule_id, str) or not schedule_id:
        raise EnvelopeError("schedule_id must be a non-empty string")
    if not isinstance(job_type, str) or not job_type:
        raise EnvelopeError("a scheduled run needs its job type")
    if not isinstance(payload, dict) or not isinstance(metadata, dict):
        raise EnvelopeError("payload and metadata must be JSON objects")
    return ScheduledRun(schedule_id, job_type, payload, metadata)
