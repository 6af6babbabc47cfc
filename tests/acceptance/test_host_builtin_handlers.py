"""export-data, generate-report and cleanup-old-data through the whole chain."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import projections
from jobstore import job_events
from tests.host_support import Host, running_host


@pytest.fixture
async def host(db_dsn: str, tmp_path: Path) -> AsyncIterator[Host]:
    async with running_host(db_dsn, export_dir=tmp_path / "exports") as running:
        yield running


async def _completed_jobs(host: Host, count: int, **metadata: object) -> list[str]:
    ids = [
        await host.dispatcher.enqueue("test-job", {"tag": str(i)}, metadata) for i in range(count)
    ]
    for job_id in ids:
        await host.wait_status(job_id, "completed")
    return ids


async def _caught_up(host: Host) -> None:
    await projections.wait_for_position(
        host.ctx.store.pool, await host.ctx.store.last_position(), timeout=10
    )


async def test_export_data_writes_the_users_job_history_as_json_lines(
    host: Host, tmp_path: Path
) -> None:
    mine = await _completed_jobs(host, 3, user_id=7)
    await _completed_jobs(host, 2, user_id=8)
    await _caught_up(host)

    export_id = await host.dispatcher.enqueue("export-data", {"user_id": 7})
    execution = await host.wait_status(export_id, "completed")

    path = Path(execution.result["path"])
    assert path.parent == (tmp_path / "exports" / "user-7").resolve()
    text = await asyncio.to_thread(path.read_text)
    lines = [json.loads(line) for line in text.splitlines()]
    assert sorted(line["job_id"] for line in lines) == sorted(mine)
    assert execution.result["jobs"] == 3
    history = lines[0]["events"]
    assert [e["type"] for e in history] == ["job.dispatched", "job.started", "job.completed"]


async def test_generate_report_writes_json_and_csv_for_the_period(host: Host) -> None:
    await _completed_jobs(host, 4, organization_id=5)
    await _caught_up(host)
    now = datetime.now(UTC)
    report_id = await host.dispatcher.enqueue(
        "generate-report",
        {
            "period_start": (now - timedelta(hours=1)).isoformat(),
            "period_end": (now + timedelta(hours=1)).isoformat(),
            "organization_id": 5,
        },
    )
    execution = await host.wait_status(report_id, "completed")

    report = json.loads(await asyncio.to_thread(Path(execution.result["json"]).read_text))
    assert report["total_jobs"] == 4
    (row,) = report["rows"]
    assert (row["job_type"], row["status"], row["jobs"]) == ("test-job", "completed", 4)
    assert row["p50_seconds"] is not None
    text = await asyncio.to_thread(Path(execution.result["csv"]).read_text)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["job_type"] == "test-job"
    assert rows[0]["jobs"] == "4"


async def test_cleanup_archives_old_finished_jobs_and_the_views_drop_them(host: Host) -> None:
    store = host.ctx.store
    old_job = str(uuid.uuid4())
    long_ago = datetime.now(UTC) - timedelta(days=40)
    events = [
        job_events.JobDispatched(
            job_id=old_job,
            dispatch=1,
            job_type="test-job",
            payload={},
            options={"timeout": 1.0},
            source="schedule",
        ),
        job_events.JobStarted(dispatch=1, attempt=1, lease_until=1.0),
        job_events.JobCompleted(dispatch=1, attempt=1, duration_seconds=0.1),
    ]
    for version, event in enumerate(events, start=1):  # history from 40 days ago
        await store.pool.execute(
            "INSERT INTO jobtrail.events (stream_id, version, event_type, schema_version, data,"
            " recorded_at) VALUES ($1, $2, $3, $4, $5::json, $6)",
            f"job-{old_job}",
            version,
            event.type_name,
            event.schema_version,
            event.to_json_data(),
            long_ago,
        )
    (recent,) = await _completed_jobs(host, 1)
    await _caught_up(host)
    assert await projections.get_job_execution(store.pool, old_job) is not None

    cleanup_id = await host.dispatcher.enqueue("cleanup-old-data", {"retention": 30})
    execution = await host.wait_status(cleanup_id, "completed")
    await _caught_up(host)

    assert execution.result["archived"] == 1
    assert await store.read_stream(f"job-{old_job}") == []
    assert len(await store.read_archived_stream(f"job-{old_job}")) == 3
    assert await projections.get_job_execution(store.pool, old_job) is None
    assert await projections.get_job_execution(store.pool, recent) is not None
