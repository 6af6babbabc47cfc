"""The OpenAPI 3 document of the read/ops API (served at ``/api/v1/openapi.json``).

Kept by hand next to the routes; ``tests/integration/test_projection_api_schema.py`` runs
schemathesis against it, so a route and its description cannot drift apart unnoticed.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from jobstore import JOB_STATUSES
from projections import audit_openapi, histogram, reader, stats
from projections import filter as job_filter
from projections.token import Scope

SCOPES: Final = {
    "openapi": Scope.READ,
    "listJobs": Scope.READ,
    "getJob": Scope.READ,
    "getJobEvents": Scope.READ,
    "getStats": Scope.READ,
    "listSchedules": Scope.READ,
    "enqueueJob": Scope.OPERATE,
    "replayJobs": Scope.OPERATE,
    "replayJob": Scope.OPERATE,
    "cancelJob": Scope.OPERATE,
    "eraseSubject": Scope.ADMIN,
    **audit_openapi.SCOPES,
}
"""The scope each operation needs, by operationId (= the route's name); unknown: read."""

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


_STATUS = {"type": "string", "enum": [s.value for s in JOB_STATUSES]}
_EXECUTION = {
    "job_id": {"type": "string"},
    "job_type": {"type": "string"},
    "status": _STATUS,
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
_ATTEMPT = {
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
_EVENT = {
    "position": {"type": "integer"},
    "version": {"type": "integer"},
    "type": {"type": "string"},
    "schema_version": {"type": "integer"},
    "data": _OBJECT,
    "metadata": _OBJECT,
    "recorded_at": {"type": "string", "format": "date-time"},
}
_SCHEDULE = {
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
_BULK_REPLAY = {
    "selected": {"type": "integer"},
    "replayed": {"type": "integer"},
    "replayed_job_ids": {"type": "array", "items": {"type": "string"}},
    "skipped": {
        "type": "array",
        "items": _object({"job_id": {"type": "string"}, "reason": {"type": "string"}}),
    },
    "position": {"type": "integer"},
}
_ERROR = {
    "error": {"type": "string"},
    "code": {"type": "string"},
    "parameter": {"type": "string"},
    "details": {"type": "array", "items": {"type": "string"}},
    "scope": {"type": "string", "enum": [s.value for s in Scope]},
    "count": {"type": "integer"},
}


def _schemas() -> dict[str, Any]:
    return {**_job_schemas(), **_result_schemas(), **_body_schemas(), **audit_openapi.schemas()}


def _job_schemas() -> dict[str, Any]:
    return {
        "Error": _object(_ERROR, optional=("parameter", "details", "scope", "count")),
        "JobExecution": _object(_EXECUTION),
        "Attempt": _object(_ATTEMPT),
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
        "Event": _object(_EVENT),
        "JobHistory": _object(
            {"job_id": {"type": "string"}, "events": {"type": "array", "items": _ref("Event")}}
        ),
    }


def _result_schemas() -> dict[str, Any]:
    return {
        "Stats": _stats_schema(),
        "Enqueued": _object(
            {
                "job_id": {"type": "string"},
                "position": {"type": "integer", "nullable": True},
                "created": {"type": "boolean"},
                "archived": {"type": "boolean"},
            }
        ),
        "Changed": _object({"job_id": {"type": "string"}, "position": {"type": "integer"}}),
        "Cancelled": _object(
            {
                "job_id": {"type": "string"},
                "position": {"type": "integer"},
                "attempt_running": {"type": "boolean"},
                "message": {"type": "string"},
            }
        ),
        "BulkReplay": _object(_BULK_REPLAY),
        "Schedule": _object(_SCHEDULE),
        "ScheduleList": _object({"items": {"type": "array", "items": _ref("Schedule")}}),
        "Erasure": _object(
            {
                "subject": {"type": "string", "enum": ["job", "user", "organization"]},
                "subject_id": {"type": "string"},
                "job_ids": {"type": "array", "items": {"type": "string"}},
                "schedule_ids": {"type": "array", "items": {"type": "string"}},
                "position": {"type": "integer", "nullable": True},
                "vacuumed": {"type": "boolean"},
            }
        ),
    }


def _stats_schema() -> dict[str, Any]:
    durations = {
        "count": {"type": "integer"},
        **{f"p{p}": _NULLABLE_NUMBER for p in stats.PERCENTILES},
    }
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    type_stats = _object(
        {"total": {"type": "integer"}, "by_status": counts, "duration_seconds": _object(durations)}
    )
    return _object(
        {
            "total": {"type": "integer"},
            "by_status": counts,
            "by_type": {"type": "object", "additionalProperties": type_stats},
        }
    )


def _body_schemas() -> dict[str, Any]:
    closed = {"type": "object", "additionalProperties": False}
    return {
        "FilterBody": {
            **closed,
            "properties": {
                **_filter_properties(),
                "reason": _reason(),
                "expected_count": {"type": "integer", "minimum": 0},
            },
        },
        "ReasonBody": {**closed, "properties": {"reason": _reason()}},
        "ErasureBody": {
            **closed,
            "properties": {
                "job_id": _JOB_ID,
                "user_id": {"type": "integer", "minimum": 1},
                "organization_id": {"type": "integer", "minimum": 1},
                "reason": _reason(),
            },
        },
        "ReplayBody": {
            **closed,
            "properties": {
                "reason": _reason(),
                "payload": {
                    **_OBJECT,
                    "nullable": True,
                    "description": "A corrected payload, validated against the job type",
                },
                "options": {
                    **_OBJECT,
                    "nullable": True,
                    "description": "retries, delay, callback, failure_callback or headers "
                    "replacing those of the previous dispatch",
                },
            },
        },
        "EnqueueBody": {
            **closed,
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
    text = {"type": "string", "minLength": 1, "maxLength": job_filter.MAX_TEXT}
    return {
        "status": {"type": "string", "enum": [s.value for s in JOB_STATUSES]},
        "type": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$"},
        "user_id": ident,
        "organization_id": ident,
        "created_from": {"type": "string", "format": "date-time"},
        "created_to": {"type": "string", "format": "date-time"},
        "error_contains": text,
        "schedule_id": text,
        "source": {"type": "string", "enum": list(job_filter.SOURCES)},
    }


_RAW_TEXT = (
    "true: show secret-looking values (passwords, tokens, keys, card numbers) unredacted; "
    "needs the 'admin' scope (403 otherwise)."
)
_QUERY_PARAMETERS = {
    "status": "Only jobs with this status.",
    "type": "Only jobs of this type.",
    "user_id": "Only jobs whose metadata has this user_id.",
    "organization_id": "Only jobs whose metadata has this organization_id.",
    "created_from": "Only jobs created at or after this time.",
    "created_to": "Only jobs created at or before this time.",
    "error_contains": "Only jobs whose last error contains this text (any case).",
    "schedule_id": "Only jobs that runs of this schedule minted.",
    "source": "Only jobs whose current dispatch came from this source.",
    "cursor": "next_cursor of the previous page, with the same filters.",
    "limit": f"Jobs per page, 1 to {reader.MAX_LIMIT} (default {reader.DEFAULT_LIMIT}).",
    "raw": _RAW_TEXT,
}


def _parameters() -> list[dict[str, Any]]:
    schemas = {
        **_filter_properties(),
        "cursor": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": reader.MAX_LIMIT},
        "raw": {"type": "boolean"},
    }
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": schemas[name],
        }
        for name, text in _QUERY_PARAMETERS.items()
    ]


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(schema)}}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": _json(schema)}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "An invalid parameter or body (the error names it).",
        401: "Missing or wrong bearer token.",
        403: "The token lacks the scope this needs (the answer names it in 'scope').",
        404: "No such job.",
        409: "The job is not in a state that allows this.",
        413: "The body is too large.",
        503: "The database is unavailable; retry later.",
    }
    return {str(s): _answer(text[s], "Error") for s in (401, 403, 503, *statuses)}


_JOB_PATH_ID = {"name": "id", "in": "path", "required": True, "schema": _JOB_ID}
_RAW_PARAMETER = {
    "name": "raw",
    "in": "query",
    "required": False,
    "description": _RAW_TEXT,
    "schema": {"type": "boolean"},
}


def _body(schema: str, required: bool) -> dict[str, Any]:
    return {"required": required, "content": _json(schema)}


def _operation(
    summary: str,
    operation_id: str,
    answers: dict[str, Any],
    *,
    by_id: bool = False,
    body: dict[str, Any] | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        "description": f"Needs a token with the '{SCOPES[operation_id].value}' scope.",
    }
    if by_id:
        operation["parameters"] = [_JOB_PATH_ID, _RAW_PARAMETER] if raw else [_JOB_PATH_ID]
    elif raw:
        operation["parameters"] = [_RAW_PARAMETER]
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = answers
    return operation


def _paths() -> dict[str, Any]:
    return {
        **_job_paths(),
        **_job_action_paths(),
        **_other_paths(),
        **audit_openapi.paths(_answer, _errors),
    }


def _job_paths() -> dict[str, Any]:
    listing = _operation(
        "List job executions, newest first",
        "listJobs",
        {"200": _answer("A page of jobs.", "JobPage"), **_errors(400)},
    )
    listing["parameters"] = _parameters()
    created = {
        "201": _answer("Recorded.", "Enqueued"),
        "200": _answer("Already recorded under its idempotency key.", "Enqueued"),
    }
    return {
        "/jobs": {
            "get": listing,
            "post": _operation(
                "Enqueue a job",
                "enqueueJob",
                {**created, **_errors(400, 409, 413)},
                body=_body("EnqueueBody", True),
            ),
        },
        "/jobs/{id}": {
            "get": _operation(
                "One job execution with its attempts",
                "getJob",
                {"200": _answer("The job.", "JobDetail"), **_errors(400, 404)},
                by_id=True,
                raw=True,
            )
        },
        "/jobs/{id}/events": {
            "get": _operation(
                "A job's events, in order",
                "getJobEvents",
                {"200": _answer("The events.", "JobHistory"), **_errors(400, 404)},
                by_id=True,
                raw=True,
            )
        },
    }


def _job_action_paths() -> dict[str, Any]:
    reason = _body("ReasonBody", False)
    changed = _errors(400, 404, 409, 413)
    return {
        "/jobs/replay": {
            "post": _operation(
                "Replay every failed or cancelled job the filter selects",
                "replayJobs",
                {
                    "200": _answer("What was replayed.", "BulkReplay"),
                    **_errors(400, 413),
                    "409": _answer(
                        "Not replayed: no expected_count (CONFIRM_COUNT) or a different one "
                        "(COUNT_CHANGED); 'count' is how many jobs match now.",
                        "Error",
                    ),
                },
                body=_body("FilterBody", False),
            )
        },
        "/jobs/{id}/replay": {
            "post": _operation(
                "Replay a failed (or never-completed cancelled) job",
                "replayJob",
                {"200": _answer("Dispatched again.", "Changed"), **changed},
                by_id=True,
                body=_body("ReplayBody", False),
            )
        },
        "/jobs/{id}/cancel": {
            "post": _operation(
                "Cancel a job's future attempts",
                "cancelJob",
                {"200": _answer("Cancel recorded.", "Cancelled"), **changed},
                by_id=True,
                body=reason,
            )
        },
    }


def _other_paths() -> dict[str, Any]:
    return {
        "/stats": {
            "get": _operation(
                "Jobs per status and type, and duration percentiles",
                "getStats",
                {"200": _answer("The stats.", "Stats"), **_errors(400)},
            )
        },
        "/schedules": {
            "get": _operation(
                "Recurring jobs",
                "listSchedules",
                {"200": _answer("The schedules.", "ScheduleList"), **_errors(400)},
                raw=True,
            )
        },
        "/erasures": {
            "post": _operation(
                "Erase the personal data of a job, a user's or an organization's jobs and "
                "schedules (give one id); every event stays, the data keys are destroyed, "
                "the subject's schedules deleted",
                "eraseSubject",
                {"200": _answer("Erased (job_ids empty: none left).", "Erasure"), **_errors(400)},
                body=_body("ErasureBody", True),
            )
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
            f"Duration percentiles are estimated from {len(histogram.BOUNDS) + 1} fixed buckets. "
            "Bearer tokens carry scopes: 'read' (views, history, stats), 'operate' (enqueue, "
            "cancel, replay, schedules; implies read) and 'admin' (raw, unredacted payloads "
            "with ?raw=true, personal data opened, erasures; implies operate). Personal data "
            "(sealed per job) reads '[personal]' without 'admin' and '[erased]' once erased. "
            "A token lacking an operation's scope gets 403.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "JOBTRAIL_API_TOKENS entries name:scope+scope:token; "
                    "JOBTRAIL_API_TOKEN is one token with every scope.",
                }
            },
        },
    }
