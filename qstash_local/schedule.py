"""Schedules: a cron expression plus a message template, fired by the scheduler (§6)."""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from typing import Any

from croniter import croniter

from qstash_local.error import BadRequest
from qstash_local.message import (
    body_fields,
    callback_header_fields,
    flow_control_fields,
    header_map,
)
from qstash_local.spec import Spec


@dataclasses.dataclass(slots=True, frozen=True)
class Cron:
    """A parsed 5-field cron expression with its time zone (UTC unless ``CRON_TZ=``)."""

    text: str
    fields: str
    zone: datetime.tzinfo

    def next_after(self, when_s: float) -> float:
        """Return the first trigger time strictly after ``when_s`` (unix seconds)."""
        start = datetime.datetime.fromtimestamp(when_s, tz=self.zone)
        return float(croniter(self.fields, start).get_next(float))


def parse_cron(text: str) -> Cron:
    """Parse ``[CRON_TZ=<zone> ]<minute> <hour> <day> <month> <weekday>``."""
    rest = text.strip()
    zone: datetime.tzinfo = datetime.UTC
    if rest.startswith("CRON_TZ="):
        name, _, rest = rest[len("CRON_TZ=") :].partition(" ")
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise BadRequest(
                f"invalid cron {text!r}: unknown CRON_TZ time zone {name!r}, "
                "expected an IANA name such as America/New_York"
            ) from None
    fields = " ".join(rest.split())
    if len(fields.split()) != 5 or not croniter.is_valid(fields):
        raise BadRequest(
            f"invalid cron {text!r}: expected 5 fields (minute hour day-of-month month "
            "day-of-week), e.g. '*/5 * * * *', optionally prefixed by CRON_TZ=<zone>"
        )
    return Cron(text=text, fields=fields, zone=zone)


@dataclasses.dataclass(slots=True, eq=False)
class Schedule:
    """A schedule and what its last run produced."""

    id: str
    destination: str
    cron: Cron
    spec: Spec
    body: bytes
    created_ms: int
    next_s: float
    queue_name: str | None = None
    caller_ip: str | None = None
    paused: bool = False
    last_s: float | None = None
    last_states: dict[str, str] = dataclasses.field(default_factory=dict)
    error: str | None = None


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """Render a schedule as ``GET /v2/schedules/{id}`` returns it (keys of §6.2)."""
    spec = schedule.spec
    out: dict[str, Any] = {
        "scheduleId": schedule.id,
        "destination": schedule.destination,
        "cron": schedule.cron.text,
        "createdAt": schedule.created_ms,
        "method": spec.method,
        "retries": spec.retries,
        "header": header_map(spec.delivered_headers(), spec.redact),
        "isPaused": schedule.paused,
        "nextScheduleTime": int(schedule.next_s * 1000),
    }
    out.update(body_fields(schedule.body, spec.redact))
    out.update(_optional(schedule))
    return out


def _optional(schedule: Schedule) -> dict[str, Any]:
    spec = schedule.spec
    out: dict[str, Any] = {}
    if spec.callback is not None:
        out["callback"] = spec.callback
    if spec.failure_callback is not None:
        out["failureCallback"] = spec.failure_callback
    out.update(callback_header_fields(spec))
    if spec.delay_s:
        out["delay"] = int(spec.delay_s)
    if spec.timeout_s is not None:
        # UNVERIFIED unit: the SDK only stores it; seconds match the Upstash-Timeout header.
        out["timeout"] = int(spec.timeout_s)
    if spec.retry_delay is not None:
        out["retryDelayExpression"] = spec.retry_delay
    if spec.labels:
        out["label"] = spec.labels[0]
        out["labels"] = list(spec.labels)
    out.update(flow_control_fields(spec))
    out.update(_runtime(schedule))
    return out


def _runtime(schedule: Schedule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if schedule.caller_ip is not None:
        out["callerIP"] = out["callerIp"] = schedule.caller_ip
    if schedule.queue_name is not None:
        out["queueName"] = schedule.queue_name
    if schedule.last_s is not None:
        out["lastScheduleTime"] = int(schedule.last_s * 1000)
        out["lastScheduleStates"] = dict(schedule.last_states)
    if schedule.error is not None:
        out["error"] = schedule.error
    return out
