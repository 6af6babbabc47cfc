"""export-data: a user's or an organization's job history as JSON Lines.

One line per job, newest first: its execution record and every event of its history.
The file is ``<exports>/user-<id>/export-<job id>-<dispatch>.jsonl`` (or ``organization-``):
no value from the payload is used in the path but the validated numeric owner id, and a
retried attempt rewrites the same file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

import projections
from jobstore import BaseJob, Settings, payloads
from workers.context import HostContext
from workers.handlers.export_folder import inside, older_than, write_atomically

ExportHandler = Callable[
    [payloads.ExportDataPayload, BaseJob, HostContext], Awaitable[dict[str, Any]]
]
PAGE = 500
FILES = ("user-*/export-*.jsonl", "organization-*/export-*.jsonl")
"""Where export-data writes under the export folder (retention removes old ones)."""


def export_handler(settings: Settings) -> ExportHandler:
    """The export-data handler writing under ``settings.exports_dir``."""

    async def export_data(
        payload: payloads.ExportDataPayload, job: BaseJob, host: HostContext
    ) -> dict[str, Any]:
        owner = (
            f"user-{payload.user_id}"
            if payload.user_id is not None
            else f"organization-{payload.organization_id}"
        )
        path = inside(settings.exports_dir, owner, f"export-{job.job_id}-{job.dispatch}.jsonl")
        lines: list[bytes] = []
        cursor: str | None = None
        while True:
            page = await projections.list_job_executions(
                host.store.pool,
                user_id=payload.user_id,
                organization_id=payload.organization_id,
                created_from=payload.since,
                cursor=cursor,
                limit=PAGE,
            )
            for execution in page.items:
                history = await projections.get_job_history(host.store, execution.job_id)
                lines.append(_line(execution.model_dump(mode="json"), history))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        size = await asyncio.to_thread(write_atomically, path, lines)
        return {"path": str(path), "jobs": len(lines), "bytes": size}

    return export_data


def old_files(root: Path, before: float) -> list[Path]:
    """The files export-data wrote under ``root`` last modified before ``before`` (epoch s)."""
    return older_than(root, FILES, before)


def _line(execution: dict[str, Any], history: list[Any]) -> bytes:
    events = [
        {
            "position": r.position,
            "version": r.version,
            "type": r.type_name,
            "recorded_at": r.recorded_at.isoformat(),
            "data": r.event.to_json_data(),
        }
        for r in history
    ]
    return orjson.dumps({**execution, "events": events}) + b"\n"
