"""The audit routes' part of the API's OpenAPI document (``projections/audit_route.py``)."""

from __future__ import annotations

from typing import Any, Final

from projections.token import Scope

SCOPES: Final = {"verifyAudit": Scope.ADMIN, "listAuditAnchors": Scope.ADMIN}
"""The scope each audit operation needs, by operationId (= the route's name)."""

_COUNT = {"type": "integer", "minimum": 0}
_NULLABLE_COUNT = {"type": "integer", "minimum": 0, "nullable": True}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
_BREAK = {
    "type": "object",
    "properties": {
        "stream_id": {"type": "string", "nullable": True},
        "version": _NULLABLE_COUNT,
        "position": _NULLABLE_COUNT,
        "anchor": _NULLABLE_COUNT,
        "problem": {"type": "string"},
        "unchecked": {"type": "boolean"},
    },
    "required": ["stream_id", "version", "position", "anchor", "problem", "unchecked"],
}


def schemas() -> dict[str, Any]:
    """The schemas the audit operations answer with."""
    report = {
        "intact": {"type": "boolean"},
        "first_break": {**_BREAK, "nullable": True},
        "breaks": {"type": "array", "items": _BREAK},
        "more_breaks": _COUNT,
        "events_checked": _COUNT,
        "archived_events_checked": _COUNT,
        "anchors_checked": _COUNT,
        "last_anchor": _NULLABLE_COUNT,
        "last_anchor_at": {"type": "string", "nullable": True},
        "unanchored_events": _COUNT,
        "unchained_events": _COUNT,
        "unchecked_anchors": {"type": "array", "items": {"type": "integer", "minimum": 1}},
    }
    anchor = {
        "seq": {"type": "integer", "minimum": 1},
        "body": {"type": "string"},
        "digest": {"type": "string"},
        "key_id": {"type": "string"},
        "signature": {"type": "string"},
    }
    return {
        "AuditReport": {"type": "object", "properties": report, "required": list(report)},
        "AuditAnchorPage": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {"type": "object", "properties": anchor, "required": list(anchor)},
                },
                "next_after": _NULLABLE_COUNT,
            },
            "required": ["items", "next_after"],
        },
    }


def paths(answer: Any, errors: Any) -> dict[str, Any]:
    """The audit paths; ``answer(description, schema)`` and ``errors(*statuses)`` are the
    document's own helpers."""

    def query(name: str, text: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": schema,
        }

    def operation(summary: str, operation_id: str, schema: str, parameters: list[Any]) -> Any:
        return {
            "summary": summary,
            "operationId": operation_id,
            "description": f"Needs a token with the '{SCOPES[operation_id].value}' scope.",
            "parameters": parameters,
            "responses": {"200": answer(summary, schema), **errors(400)},
        }

    return {
        "/audit/verify": {
            "get": operation(
                "Verify the tamper-evident log: every event's hash, the signed anchors and "
                "every anchored stream (intact, or each broken place)",
                "verifyAudit",
                "AuditReport",
                [query("from", "Verify from this log position on.", _COUNT)],
            )
        },
        "/audit/anchors": {
            "get": operation(
                "The signed anchors of the log's stream heads, in order, to keep elsewhere",
                "listAuditAnchors",
                "AuditAnchorPage",
                [
                    query("after", "Only anchors after this one (next_after of a page).", _COUNT),
                    query(
                        "limit",
                        "Anchors per page, 1 to 1000.",
                        {**_COUNT, "minimum": 1, "maximum": 1000},
                    ),
                ],
            )
        },
    }
