"""How the demo shows things: a status table per job type, and one job's timeline."""

from __future__ import annotations

from rich.table import Table

from jobstore import RecordedEvent
from projections import JobStats

_GROUPS = {
    "done": ("completed",),
    "failed": ("failed",),
    "cancelled": ("cancelled",),
    "active": ("pending", "processing", "retrying"),
}
_GROUP_STYLE = {"done": "green", "failed": "red", "cancelled": "yellow", "active": "cyan"}


def status_table(stats: JobStats, title: str) -> Table:
    """Jobs per type and status group (only groups that have jobs), with p50/p99 timings."""
    groups = [
        g for g, statuses in _GROUPS.items() if any(stats.by_status.get(s, 0) for s in statuses)
    ]
    table = Table(title=title)
    table.add_column("job type", no_wrap=True)
    for group in groups:
        table.add_column(group, justify="right", style=_GROUP_STYLE[group])
    for column in ("total", "p50 s", "p99 s"):
        table.add_column(column, justify="right")
    for job_type, by_type in sorted(stats.by_type.items()):
        p = by_type.durations.percentiles
        table.add_row(
            job_type,
            *_counts(by_type.by_status, groups),
            str(by_type.total),
            _num(p.get(50)),
            _num(p.get(99)),
        )
    table.add_row("all", *_counts(stats.by_status, groups), str(stats.total), "", "", style="bold")
    return table


def _counts(by_status: dict[str, int], groups: list[str]) -> list[str]:
    values = [sum(by_status.get(s, 0) for s in _GROUPS[g]) for g in groups]
    return [str(v) if v else "" for v in values]


def timeline(job_id: str, history: list[RecordedEvent]) -> Table:
    """Every event of one job, attempt by attempt."""
    table = Table(title=f"history of job {job_id}")
    table.add_column("time", no_wrap=True, min_width=12)
    table.add_column("event", no_wrap=True, min_width=18)
    table.add_column("try", no_wrap=True, min_width=3)
    table.add_column("details", no_wrap=True, overflow="ellipsis", max_width=30)
    for recorded in history:
        data = recorded.event.to_json_data()
        where = f"{data.get('dispatch', '')}/{data.get('attempt', '')}".strip("/")
        table.add_row(
            recorded.recorded_at.strftime("%H:%M:%S.%f")[:-3],
            recorded.type_name,
            where,
            _details(data),
        )
    return table


def _details(data: dict[str, object]) -> str:
    for key in ("error_message", "reason", "source"):
        if data.get(key):
            return str(data[key])[:70]
    if data.get("error_type"):
        return str(data["error_type"])
    if data.get("duration_seconds") is not None:
        return f"took {float(str(data['duration_seconds'])):.3f} s"
    return ""


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
