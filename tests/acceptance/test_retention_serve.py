"""`jobtrail serve` archives old finished jobs by itself; status and /metrics say so."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import orjson

import jobstore
from bench.projections import job_id as bench_job_id
from tests.cli_support import jobtrail
from tests.integration.test_retention import OLD_FINISHED, OLD_PENDING, load_old_jobs
from tests.processes import env_for, serve_stack

JOBTRAIL = [sys.executable, "-c", "from workers.cli import main; main()"]


async def archived_streams(pool: asyncpg.Pool) -> set[str]:
    rows = await pool.fetch("SELECT DISTINCT stream_id FROM jobtrail.events_archive")
    return {row["stream_id"] for row in rows}


async def published_long_ago(pool: asyncpg.Pool) -> None:
    """The relay and the notifier handled the loaded jobs when they ran, months ago."""
    head = await jobstore.EventStore(pool).head()
    for name in ("relay", "notifications"):
        await pool.execute(
            "INSERT INTO jobtrail.checkpoints (name, position, xid)"
            " VALUES ($1, $2, $3::bigint::text::xid8)",
            name,
            head.position,
            head.transaction,
        )


async def test_serve_archives_old_finished_jobs_by_itself(
    pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    await load_old_jobs(pool)
    await published_long_ago(pool)
    expected = {f"job-{bench_job_id(j)}" for j in OLD_FINISHED}
    async with serve_stack(db_dsn, tmp_path, JOBTRAIL_RETENTION_DAYS="30") as stack:
        for _ in range(600):
            finished = await pool.fetchval(
                "SELECT count(*) FROM jobtrail.retention_runs WHERE finished_at IS NOT NULL"
            )
            if finished and await archived_streams(pool) == expected:
                break
            await asyncio.sleep(0.1)
        assert await archived_streams(pool) == expected, "archived within 60 s of the start"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{stack.host_url}/metrics") as response,
        ):
            metrics = await response.text()
    assert "jobtrail_retention_archived_events 60.0" in metrics
    assert "jobtrail_retention_days 30.0" in metrics
    for j in OLD_PENDING:
        left = await pool.fetchval(
            "SELECT count(*) FROM jobtrail.events WHERE stream_id = $1", f"job-{bench_job_id(j)}"
        )
        assert left == 1, "an unfinished job stays, however old"

    result = await jobtrail(db_dsn, "retention", "status", "--json")

    assert result.code == 0, result.err
    status = orjson.loads(result.out)
    assert status["retention_days"] == 30 and status["enabled"] is True
    assert (status["due_jobs"], status["archived_events"]) == (0, 60)
    assert status["last_run"]["archived_jobs"] == len(OLD_FINISHED)
    assert status["last_run"]["error"] is None
    assert status["next_run_at"] > status["last_run"]["started_at"]


async def test_retention_status_in_a_table(db_dsn: str) -> None:
    result = await jobtrail(db_dsn, "retention", "status")
    assert result.code == 0, result.err
    for line in ("finished jobs kept in the log", "30 day(s)", "off (archived events are kept)"):
        assert line in result.out
    assert "as soon as a host runs `jobtrail serve`" in result.out


def test_serve_refuses_a_purge_without_an_export_folder_in_one_line(tmp_path: Path) -> None:
    env = env_for(
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/never-reached",
        JOBTRAIL_ARCHIVE_DAYS="90",
        JOBTRAIL_DATA_DIR=str(tmp_path),
    )
    env.pop("QSTASH_TOKEN")  # the in-process qstash_local: safe, so only retention refuses
    result = subprocess.run(
        [*JOBTRAIL, "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "JOBTRAIL_ARCHIVE_EXPORT_DIR" in lines[0], result.stderr
