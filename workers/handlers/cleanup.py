"""cleanup-old-data: archive the event streams of finished jobs older than the retention.

Candidates come from the views; ``jobtrail.archive_streams`` checks each stream again and
moves whole streams to ``jobtrail.events_archive``, recording ``log.streams_archived``, so
the views drop those jobs the same way incrementally and on a rebuild.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from jobstore import BaseJob, Settings, job_state, payloads, query
from workers.context import HostContext

CleanupHandler = Callable[
    [payloads.CleanupOldDataPayload, BaseJob, HostContext], Awaitable[dict[str, Any]]
]
_Q = query.load("workers.handlers", "cleanup.sql")
BATCH = 500
log = structlog.get_logger(__name__)


def cleanup_handler(_settings: Settings) -> CleanupHandler:
    """The cleanup-old-data handler."""

    async def cleanup_old_data(
        payload: payloads.CleanupOldDataPayload, _job: BaseJob, host: HostContext
    ) -> dict[str, Any]:
        cutoff = datetime.now(UTC) - timedelta(days=payload.retention)
        archived = 0
        while True:
            rows = await host.store.pool.fetch(_Q["finished_before"], cutoff, BATCH)
            if not rows:
                break
            moved = await host.store.archive_streams(
                [job_state.stream_id(row["job_id"]) for row in rows], cutoff, payload.retention
            )
            archived += len(moved)
            if len(moved) < len(rows):  # the rest are not (or no longer) archivable
                break
        log.info("old jobs archived", archived=archived, retention_days=payload.retention)
        return {"archived": archived, "finished_before": cutoff.isoformat()}

    return cleanup_old_data
