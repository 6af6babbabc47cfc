"""Retention on /metrics: what is kept, archived, purged and when, and the next run.

The same figures as ``jobtrail retention status`` (``workers.retention.status``), read at
most once a minute per host: they count whole tables, and a scrape every few seconds
must not.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Gauge

from workers import retention
from workers.context import HostContext

REFRESH_SECONDS = 60.0


@dataclass
class _Gauges:
    read_at: float | None
    gauges: dict[str, Gauge]


_HELP = {
    "jobtrail_retention_days": "Days finished jobs stay in the log (0: retention off)",
    "jobtrail_retention_archive_days": "Days archived events are kept (0: never purged)",
    "jobtrail_retention_log_jobs": "Jobs in the log (the views), finished or not",
    "jobtrail_retention_due_jobs": "Finished jobs past the retention, not archived yet",
    "jobtrail_retention_archived_events": "Events in the archive",
    "jobtrail_retention_archive_oldest_timestamp_seconds": "When the oldest archived "
    "event was archived (0: archive empty)",
    "jobtrail_retention_purged_events": "Archived events purged (exported first), all runs",
    "jobtrail_retention_last_purge_timestamp_seconds": "Last purge (0: never)",
    "jobtrail_retention_removed_files": "Old export-data and generate-report files removed",
    "jobtrail_retention_last_run_timestamp_seconds": "Start of the last run (0: never)",
    "jobtrail_retention_last_run_failed": "1 when a step of the last run failed",
    "jobtrail_retention_next_run_timestamp_seconds": "Next run (0: off)",
}
_GAUGES: WeakKeyDictionary[CollectorRegistry, _Gauges] = WeakKeyDictionary()


def _gauges(registry: CollectorRegistry) -> _Gauges:
    found = _GAUGES.get(registry)
    if found is None:
        made = {name: Gauge(name, text, registry=registry) for name, text in _HELP.items()}
        found = _GAUGES[registry] = _Gauges(None, made)
    return found


def _stamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


async def observe(ctx: HostContext) -> None:
    """Refresh the retention gauges of ``ctx``'s metrics when they are a minute old."""
    state = _gauges(ctx.metrics.registry)
    now = asyncio.get_running_loop().time()
    if state.read_at is not None and now - state.read_at < REFRESH_SECONDS:
        return
    s = await retention.status(ctx.store.pool, ctx.settings)
    last = s.last_run or {}
    values = {
        "jobtrail_retention_days": s.retention_days,
        "jobtrail_retention_archive_days": s.archive_days or 0,
        "jobtrail_retention_log_jobs": s.jobs,
        "jobtrail_retention_due_jobs": s.due_jobs,
        "jobtrail_retention_archived_events": s.archived_events,
        "jobtrail_retention_archive_oldest_timestamp_seconds": _stamp(s.oldest_archived_at),
        "jobtrail_retention_purged_events": s.purged_events,
        "jobtrail_retention_last_purge_timestamp_seconds": _stamp(s.last_purge_at),
        "jobtrail_retention_removed_files": s.removed_files,
        "jobtrail_retention_last_run_timestamp_seconds": _stamp(last.get("started_at")),
        "jobtrail_retention_last_run_failed": 1 if last.get("error") else 0,
        "jobtrail_retention_next_run_timestamp_seconds": _stamp(s.next_run_at),
    }
    for name, value in values.items():
        state.gauges[name].set(value)
    state.read_at = now
