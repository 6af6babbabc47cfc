"""generate-report: job statistics for a period (per type and status, durations), JSON + CSV.

Written to ``<exports>/reports/report-<job id>-<dispatch>.json`` and ``.csv``.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from jobstore import BaseJob, Settings, payloads, query
from workers.context import HostContext
from workers.handlers.export_folder import inside, older_than, write_atomically

ReportHandler = Callable[
    [payloads.GenerateReportPayload, BaseJob, HostContext], Awaitable[dict[str, Any]]
]
_Q = query.load("workers.handlers", "report.sql")
COLUMNS = (
    "job_type",
    "status",
    "jobs",
    "avg_seconds",
    "p50_seconds",
    "p95_seconds",
    "max_seconds",
    "attempts",
)


FILES = ("reports/report-*.json", "reports/report-*.csv")
"""Where generate-report writes under the export folder (retention removes old ones)."""


def old_files(root: Path, before: float) -> list[Path]:
    """The files generate-report wrote under ``root`` last modified before ``before``."""
    return older_than(root, FILES, before)


def report_handler(settings: Settings) -> ReportHandler:
    """The generate-report handler writing under ``settings.exports_dir``."""

    async def generate_report(
        payload: payloads.GenerateReportPayload, job: BaseJob, host: HostContext
    ) -> dict[str, Any]:
        rows = await host.store.pool.fetch(
            _Q["report_rows"], payload.period_start, payload.period_end, payload.organization_id
        )
        records = [{c: _plain(row[c]) for c in COLUMNS} for row in rows]
        report = {
            "period_start": payload.period_start.isoformat(),
            "period_end": payload.period_end.isoformat(),
            "organization_id": payload.organization_id,
            "total_jobs": sum(r["jobs"] for r in records),
            "rows": records,
        }
        stem = f"report-{job.job_id}-{job.dispatch}"
        json_path = inside(settings.exports_dir, "reports", f"{stem}.json")
        csv_path = inside(settings.exports_dir, "reports", f"{stem}.csv")
        await asyncio.to_thread(
            write_atomically, json_path, [orjson.dumps(report, option=orjson.OPT_INDENT_2)]
        )
        await asyncio.to_thread(write_atomically, csv_path, [_csv(records)])
        return {"json": str(json_path), "csv": str(csv_path), "total_jobs": report["total_jobs"]}

    return generate_report


def _plain(value: Any) -> Any:
    return (
        float(value) if hasattr(value, "as_integer_ratio") and not isinstance(value, int) else value
    )


def _csv(records: list[dict[str, Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(records)
    return text.getvalue().encode()
