"""cleanup-old-data: archive the event streams of finished jobs older than the retention.

The same archiving as the host's own schedule (``workers.retention.archive_finished``), on
demand and with the payload's retention.  Candidates come from the views;
``jobtrail.archive_streams`` checks each stream again and moves whole streams to
``jobtrail.events_archive``, recording ``log.streams_archived``, so the views drop those
jobs the same way incrementally and on a rebuild.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from jobstore import BaseJob, Settings, payloads
from workers import retention
from workers.context import HostContext

CleanupHandler = Callable[
    [payloads.CleanupOldDataPayload, BaseJob, HostContext], Awaitable[dict[str, Any]]
]
log = structlog.get_logger(__name__)


def cleanup_handler(_settings: Settings) -> CleanupHandler:
    """The cleanup-old-data handler."""

    async def cleanup_old_data(
        payload: payloads.CleanupOldDataPayload, _job: BaseJob, host: HostContext
    ) -> dict[str, Any]:
        cutoff = datetime.now(UTC) - timedelta(days=payload.retention)
        archived = await retention.archive_finished(
            host.store, cutoff, payload.retention, retention.Pace.from_settings(host.settings)
        )
        log.info("old jobs archived", archived=archived, retention_days=payload.retention)
        return {"archived": archived, "finished_before": cutoff.isoformat()}

    return cleanup_old_data
