"""The OpenAPI 3 document of the read/ops API (served at ``/api/v1/openapi.json``).

Kept by hand next to the routes; ``tests/integration/test_projection_api_schema.py`` runs
schemathesis against it, so a route and its description cannot drift apart unnoticed.
"""

from __future__ import annotations

import functools
from typing import Any

from jobstore import JOB_STATUSES
from projections import filter as job_filter
from projections import histogram, reader, stats

_NULLABLE_STR = {"type": "string", "nullable": True}
_NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
_NULLABLE_NUMBER = {"type": "number", "nullable": True}
_OBJECT = {"type": "object", "additionalProperties": True}
_JOB_ID = {"type": "string", "format": "uuid"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    required = [name for name in properties if name not in optional]
    return {"type": "object", "properties": properties, "required": required}


def _schemas() -> dict[str, Any]:
    status = {"type": "string", "enum": [s.value for s in JOB_STATUSES]}
    execution = {
        "job_id": {"type": "string"},
        "job_type": {"type": "string"},
        "status": status,
        "payload": _OBJECT,
        "metadata": _OBJECT,
        "user_id": {"type": "integer", "nullable": True},
        "organization_id": {"type": "integer", "nullable": True},
        "dispatch": {"type": "integer", "minimum": 1},
        "attempts": {"type": "integer", "minimum": 0},
        "max_retries": {"type": "integer", "minimum": 0},
        "error": _NULLABLE_STR,
        "result": {"nullable": True},
        "created_at": {"type": "string", "format": "date-time"},
        "started_at": _NULLABLE_TIME,
        "completed_at": _NULLABLE_TIME,
        "failed_at": _NULLABLE_TIME,
        "duration_seconds": _NULLABLE_NUMBER,
        "message_id": _NULLABLE_STR,
        "schedule_id": _NULLABLE_STR,
        "replay_count": {"type": "integer", "minimum": 0},
    }
    attempt = {
        "dispatch": {"type": "integer"},
        "attempt": {"type": "integer"},
        "outcome": {"type": "string", "enum": ["running", "completed", "failed", "abandoned"]},
        "message_id": _NULLABLE_STR,
        "started_at": _NULLABLE_TIME,
        "finished_at": _NULLABLE_TIME,
        "duration_seconds": _NULLABLE_NUMBER,
        "error_type": _NULLABLE_STR,
        "error_message": _NULLABLE_STR,
        "will_retry": {"type": "boolean", "nullable": True},
        "abandoned": {"type": "boolean"},
    }
    durations = {
        "count": {"type": "integer"},
        **{f"p{p}": _NULLABLE_NUMBER for p in stats.PERCENTILES},
    }
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    type_stats = _object(
        {"total": {"type": "integer"}, "by_status": counts, "duration_seconds": _object(durations)}
    )
    return {
        "Error": _object(
            {
                "error": {"type": "string"},
                "code": {"type": "string"},
                "parameter": {"type": "string"},
                "details": {"type": "array", "items": {"type": "string"}},
            },
            optional=("parameter", "details"),
        ),
        "JobExecution": _object(execution),
        "Attempt": _object(attempt),
        "JobDetail": {
            "allOf": [
                _ref("JobExecution"),
                _object({"attempts": {"type": "array", "items": _ref("Attempt")}}),
            ]
        },
        "JobPage": _object(
            {
                "items": {"type": "array", "items": _ref("JobExecution")},
                "next_cursor": _NULLABLE_STR,
            }
        ),
        "Event": _object(
            {
                "position": {"type": "integer"},
                "version": {"type": "integer"},
                "type": {"type": "string"},
                "schema_version": {"type": "integer"},
                "data": _OBJECT,
                "metadata": _OBJECT,
                "recorded_at": {"type": "string", "format": "date-time"},
            }
        ),
        "JobHistory": _object(
            {"job_id": {"type": "string"}, "events": {"type": "array", "items": _ref("Event")}}
        ),
        "Stats": _object(
            {
                "total": {"type": "integer"},
                "by_status": counts,
                "by_type": {"type": "object", "additionalProperties": type_stats},
            }
        ),
        "Enqueued": _object(
            {
                "job_id": {"type": "string"},
                "position": {"type": "integer", "nullable": True},
                "created": {"type": "boolean"},
            }
        ),
        "Changed": _object({"job_id": {"type": "string"}, "position": {"type": "integer"}}),
        "BulkReplay": _object(
            {
                "selected": {"type": "integer"},
                "replayed": {"type": "integer"},
                "replayed_job_ids": {"type": "array", "items": {"type": "string"}},
                "skipped": {
                    "type": "array",
                    "items": _object({"job_id": {"type": "string"}, "reason": {"type": "string"}}),
                },
                "position": {"type": "integer"},
            }
        ),
        "Schedule": _object(
            {
                "schedule_id": {"type": "string"},
                "job_type": {"type": "string"},
                "cron": {"type": "string"},
                "payload": _OBJECT,
                "metadata": _OBJECT,
                "retries": {"type": "integer"},
                "timeout_seconds": {"type": "number"},
                "paused": {"type": "boolean"},
                "created_at": {"type": "string", "format": "date-time"},
            }
        ),
        "ScheduleList": _object({"items": {"type": "array", "items": _ref("Schedule")}}),
        "FilterBody": {
            "type": "object",
            "additionalProperties": False,
            "properties": {**_filter_properties(), "reason": _reason()},
        },
        "ReasonBody": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"reason": _reason()},
        },
        "EnqueueBody": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "payload"],
            "properties": {
                "type": {"type": "string"},
                "payload": _OBJECT,
                "metadata": {**_OBJECT, "nullable": True},
                "options": {**_OBJECT, "nullable": True},
            },
        },
    }


def _reason() -> dict[str, Any]:
    return {"type": "string", "maxLength": 1000, "nullable": True}


def _filter_properties() -> dict[str, Any]:
    ident = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    return {
        "status": {"type": "string", "enum": [s.value for s in JOB_STATUSES]},
        "type": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$"},
        "user_id": ident,
        "organization_id": ident,
        "created_from": {"type": "string", "format": "date-time"},
        "created_to": {"type": "string", "format": "date-time"},
        "error_contains": {
            "type": "string",
            "minLength": 1,
            "maxLength": job_filter.MAX_TEXT,
        },
    }


def _parameters() -> list[dict[str, Any]]:
    described = {
        "status": "Only jobs with this status.",
        "type": "Only jobs of this type.",
        "user_id": "Only jobs whose metadata has this user_id.",
        "organization_id": "Only jobs whose metadata has this organization_id.",
        "created_from": "Only jobs created at or after this time.",
        "created_to": "Only jobs created at or before this time.",
        "error_contains": "Only jobs whose last error contains this text (any case).",
    }
    params = [
        {"name": name, "in": "query", "required": False, "description": text, "schema": schema}
        for (name, text), schema in zip(
            described.items(), _filter_properties().values(), strict=True
        )
    ]
    params.append(
        {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "next_cursor of the previous page, with the same filters.",
            "schema": {"type": "string"},
        }
    )
    params.append(
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": reader.MAX_LIMIT},
        }
    )
    return params


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(schema)}}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "An invalid parameter or body (the error names it).",
        401: "Missing or wrong bearer token.",
        404: "No such job.",
        409: "The job is not in a state that allows this.",
        413: "The body is too large.",
        503: "The database is unavailable; retry later.",
    }
    return {str(s): _answer(text[s], "Error") for s in (401, 503, *statuses)}


_JOB_PATH_ID = {"name": "id", "in": "path", "required": True, "schema": _JOB_ID}


def _body(schema: str, required: bool) -> dict[str, Any]:
    return {"required": required, "content": _json(schema)}


def _paths() -> dict[str, Any]:
    return {
        "/jobs": {
            "get": {
                "summary": "List job executions, newest first",
                "operationId": "listJobs",
                "parameters": _parameters(),
                "responses": {"200": _answer("A page of jobs.", "JobPage"), **_errors(400)},
            },
            "post": {
                "summary": "Enqueue a job",
                "operationId": "enqueueJob",
                "requestBody": _body("EnqueueBody", True),
                "responses": {
                    "201": _answer("Recorded.", "Enqueued"),
                    "200": _answer("Already recorded under its idempotency key.", "Enqueued"),
                    **_errors(400, 409, 413),
                },
            },
        },
        "/jobs/replay": {
            "post": {
                "summary": "Replay every failed or cancelled job the filter selects",
                "operationId": "replayJobs",
                "requestBody": _body("FilterBody", False),
                "responses": {
                    "200": _answer("What was replayed.", "BulkReplay"),
                    **_errors(400, 413),
                },
            }
        },
        "/jobs/{id}": {
            "get": {
                "summary": "One job execution with its attempts",
                "operationId": "getJob",
                "parameters": [_JOB_PATH_ID],
                "responses": {"200": _answer("The job.", "JobDetail"), **_errors(400, 404)},
            }
        },
        "/jobs/{id}/events": {
            "get": {
                "summary": "A job's events, in order",
                "operationId": "getJobEvents",
                "parameters": [_JOB_PATH_ID],
                "responses": {"200": _answer("The events.", "JobHistory"), **_errors(400, 404)},
            }
        },
        "/jobs/{id}/replay": {
            "post": {
                "summary": "Replay a failed (or never-completed cancelled) job",
                "operationId": "replayJob",
                "parameters": [_JOB_PATH_ID],
                "requestBody": _body("ReasonBody", False),
                "responses": {
                    "200": _answer("Dispatched again.", "Changed"),
                    **_errors(400, 404, 409, 413),
                },
            }
        },
        "/jobs/{id}/cancel": {
            "post": {
                "summary": "Cancel a job's future attempts",
                "operationId": "cancelJob",
                "parameters": [_JOB_PATH_ID],
                "requestBody": _body("ReasonBody", False),
                "responses": {
                    "200": _answer("Cancelled.", "Changed"),
                    **_errors(400, 404, 409, 413),
                },
            }
        },
        "/stats": {
            "get": {
                "summary": "Jobs per status and type, and duration percentiles",
                "operationId": "getStats",
                "responses": {"200": _answer("The stats.", "Stats"), **_errors(400)},
            }
        },
        "/schedules": {
            "get": {
                "summary": "Recurring jobs",
                "operationId": "listSchedules",
                "responses": {"200": _answer("The schedules.", "ScheduleList"), **_errors(400)},
            }
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the API."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "jobtrail read/ops API",
            "version": "1",
            "description": "Job executions, history, stats, replay and cancellation. "
            f"Duration percentiles are estimated from {len(histogram.BOUNDS) + 1} fixed buckets.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
