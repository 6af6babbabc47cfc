"""``jobtrail jobs list|show|replay|cancel`` and ``stats`` in a subprocess, on a real database.

No host runs here, so every read also shows that the command catches the views up itself.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import jobstore
import projections
from tests import pg
from tests import projection_support as events
from tests.cli_support import Result, jobtrail, one_line_error

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


async def failed_job(dispatcher: jobstore.Dispatcher, job_type: str, error: str) -> str:
    """A job that ran once and failed for good."""
    payload = {"retention": 30} if job_type == "cleanup-old-data" else _webhook()
    job_id = await dispatcher.enqueue(job_type, payload)
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": "failed", "error": error})
    return job_id


def _webhook() -> dict[str, str]:
    return {"url": "https://example.com/hook", "event": "order.paid"}


@pytest.fixture
def dispatcher(store: jobstore.EventStore) -> jobstore.Dispatcher:
    return jobstore.Dispatcher(store)


async def test_list_applies_every_filter_pages_with_a_cursor_and_stats_count(
    db_dsn: str, dispatcher: jobstore.Dispatcher
) -> None:
    email = '{"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "A"}}'
    pending = await dispatcher.enqueue(
        "send-email", json.loads(email), {"user_id": 7, "organization_id": 3}
    )
    disk = await failed_job(dispatcher, "cleanup-old-data", "disk full")
    http = await failed_job(dispatcher, "process-webhook", "HTTP 500")
    done = await dispatcher.enqueue("cleanup-old-data", {"retention": 5})
    await dispatcher.update_job_execution(done, {"status": "processing"})
    await dispatcher.update_job_execution(done, {"status": "completed", "duration_seconds": 0.25})

    def ids(out: str) -> set[str]:
        return {item["job_id"] for item in json.loads(out)["items"]}

    listed = await asyncio.gather(
        jobtrail(db_dsn, "jobs", "list", "--json"),
        jobtrail(db_dsn, "jobs", "list", "--status=failed", "--error-contains=DISK", "--json"),
        jobtrail(
            db_dsn, "jobs", "list", "--type", "cleanup-old-data", "--status", "completed", "--json"
        ),
        jobtrail(
            db_dsn,
            *("jobs", "list", "--user-id", "7", "--organization-id", "3"),
            *("--created-from", "2000-01-01", "--json"),
        ),
        jobtrail(db_dsn, "jobs", "list", "--created-to", "2000-01-02", "--json"),
        jobtrail(db_dsn, "jobs", "list", "--limit", "3"),
        jobtrail(db_dsn, "stats", "--json"),
        jobtrail(db_dsn, "stats"),
    )
    for result in listed:
        assert result.code == 0, result.err
        assert result.err == "", "the views were caught up without a warning"
    everything, disk_errors, completed, of_user, old, first_page, stats, stats_table = listed
    assert ids(everything.out) == {pending, disk, http, done}
    assert ids(disk_errors.out) == {disk}
    assert ids(completed.out) == {done}
    assert ids(of_user.out) == {pending}
    assert ids(old.out) == set()

    row = next(line for line in first_page.out.splitlines() if done in line)
    assert "cleanup-old-data" in row and "completed" in row and "250 ms" in row
    assert pending not in first_page.out, "newest first, three to a page"
    cursor = first_page.out.split("--cursor ")[1].split()[0]
    rest = await jobtrail(db_dsn, "jobs", "list", "--limit", "3", "--cursor", cursor, "--json")
    assert rest.code == 0, rest.err
    assert json.loads(rest.out) == {
        "items": [json.loads(everything.out)["items"][3]],
        "next_cursor": None,
    }

    counts = json.loads(stats.out)
    assert counts["total"] == 4
    assert counts["by_status"] == {"completed": 1, "failed": 2, "pending": 1}
    assert counts["by_type"]["cleanup-old-data"]["by_status"] == {"completed": 1, "failed": 1}
    assert counts["by_type"]["cleanup-old-data"]["duration_seconds"]["count"] == 1
    for heading in ("type", "pending", "failed", "total", "p50", "p99", "process-webhook"):
        assert heading in stats_table.out


async def test_bad_filters_name_the_option_and_exit_2(db_dsn: str) -> None:
    status, when, limit, cursor, source = await asyncio.gather(
        jobtrail(db_dsn, "jobs", "list", "--status", "done"),
        jobtrail(db_dsn, "jobs", "list", "--created-from", "yesterday"),
        jobtrail(db_dsn, "jobs", "list", "--limit", "0"),
        jobtrail(db_dsn, "jobs", "list", "--cursor", "bogus"),
        jobtrail(db_dsn, "jobs", "replay", "--source", "cron"),
    )
    one_line_error(status, 2, "--status: 'done' is not one of pending, processing")
    one_line_error(when, 2, "--created-from: 'yesterday' is not an ISO 8601 time")
    one_line_error(limit, 2, "--limit: 0 is not an integer from 1 to 500")
    one_line_error(cursor, 2, "--cursor: ")
    one_line_error(source, 2, "--source: 'cron' is not one of api, schedule, replay, recovery")


async def test_seed_metadata_schedule_and_source_filters_select_jobs(
    db_dsn: str, store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    """{"userId": 7} is found by --user-id 7; --schedule-id and --source list and replay."""
    seeded = await dispatcher.enqueue(
        "cleanup-old-data", {"retention": 30}, {"userId": 7, "organizationId": 42}
    )
    replayed = await failed_job(dispatcher, "cleanup-old-data", "disk full")
    await dispatcher.replay_job(replayed, "by hand")
    await dispatcher.update_job_execution(replayed, {"status": "processing"})
    await dispatcher.update_job_execution(replayed, {"status": "failed", "error": "again"})
    untouched = await failed_job(dispatcher, "cleanup-old-data", "disk full")
    run = events.new_job_id()
    meta = {"schedule_id": "sched_nightly"}
    await events.append(store, run, events.dispatched(run, metadata=meta, source="schedule"))

    def ids(result: Result) -> set[str]:
        assert result.code == 0, result.err
        return {item["job_id"] for item in json.loads(result.out)["items"]}

    of_user, of_org, of_schedule, by_replay = await asyncio.gather(
        jobtrail(db_dsn, "jobs", "list", "--user-id", "7", "--json"),
        jobtrail(db_dsn, "jobs", "list", "--organization-id", "42", "--json"),
        jobtrail(db_dsn, "jobs", "list", "--schedule-id", "sched_nightly", "--json"),
        jobtrail(db_dsn, "jobs", "list", "--source", "replay", "--json"),
    )
    assert ids(of_user) == ids(of_org) == {seeded}
    assert ids(of_schedule) == {run}
    assert ids(by_replay) == {replayed}

    again = await jobtrail(db_dsn, "jobs", "replay", "--source", "replay", stdin="y\n")
    assert again.code == 0, again.err
    assert "Replay 1 failed or cancelled job(s) dispatched by replay?" in again.err
    assert "replayed 1 of 1 jobs" in again.out
    state = await dispatcher.load(untouched)
    assert state is not None and state.status == "failed", "--source replay left api jobs alone"


async def test_show_is_a_timeline_of_every_event_and_attempt(
    db_dsn: str, store: jobstore.EventStore
) -> None:
    job_id = events.new_job_id()
    await events.append(
        store,
        job_id,
        events.dispatched(job_id),
        events.started(1, 1),
        events.attempt_failed(1, 1, will_retry=True, message="connection [reset]"),
        events.started(1, 2),
        events.completed(1, 2, seconds=0.25),
    )
    human, as_json, unknown, not_an_id = await asyncio.gather(
        jobtrail(db_dsn, "jobs", "show", job_id),
        jobtrail(db_dsn, "jobs", "show", job_id, "--json"),
        jobtrail(db_dsn, "jobs", "show", str(uuid.uuid4())),
        jobtrail(db_dsn, "jobs", "show", "42"),
    )
    assert human.code == 0, human.err
    lines = human.out.splitlines()
    assert f"job {job_id}: cleanup-old-data, completed" in lines[0]
    timeline = [line for line in lines if "Z │" in line and "│" in line]
    assert [_cell(line, 2) for line in timeline[:5]] == [
        "dispatched",
        "started",
        "attempt failed",
        "started",
        "completed",
    ]
    assert "RuntimeError: connection [reset] (will retry" in timeline[2]
    assert "took 250 ms" in timeline[4]
    attempts = [line for line in lines if _cell(line, 0) in ("1/1", "1/2")]
    assert "failed" in attempts[0] and "connection [reset]" in attempts[0]
    assert "completed" in attempts[1] and "250 ms" in attempts[1]

    shown = json.loads(as_json.out)
    assert shown["job"]["status"] == "completed" and shown["archived"] is False
    assert [e["type"] for e in shown["events"]] == [
        "job.dispatched",
        "job.started",
        "job.attempt_failed",
        "job.started",
        "job.completed",
    ]
    assert [(a["attempt"], a["outcome"]) for a in shown["attempts"]] == [
        (1, "failed"),
        (2, "completed"),
    ]
    one_line_error(unknown, 1, "no job with id")
    one_line_error(not_an_id, 2, "'42' is not a job id")


async def test_show_says_a_job_is_archived(
    db_dsn: str, store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    job_id = await failed_job(dispatcher, "cleanup-old-data", "disk full")
    moved = await store.archive_streams(
        [f"job-{job_id}"], datetime.now(UTC) + timedelta(minutes=1), 0
    )
    assert moved == [f"job-{job_id}"]
    human, as_json = await asyncio.gather(
        jobtrail(db_dsn, "jobs", "show", job_id), jobtrail(db_dsn, "jobs", "show", job_id, "--json")
    )
    assert human.code == 0, human.err
    assert "archived" in human.out and "disk full" in human.out
    shown = json.loads(as_json.out)
    assert shown["archived"] is True and shown["job"]["status"] == "failed"


async def test_replay_and_cancel_one_job(db_dsn: str, dispatcher: jobstore.Dispatcher) -> None:
    failed = await failed_job(dispatcher, "cleanup-old-data", "disk full")
    pending = await dispatcher.enqueue("cleanup-old-data", {"retention": 1})
    completed = await dispatcher.enqueue("cleanup-old-data", {"retention": 2})
    await dispatcher.update_job_execution(completed, {"status": "processing"})
    await dispatcher.update_job_execution(completed, {"status": "completed"})

    replayed, cancelled, not_replayable, not_cancellable, unknown, both = await asyncio.gather(
        jobtrail(db_dsn, "jobs", "replay", failed, "--reason", "disk cleaned"),
        jobtrail(db_dsn, "jobs", "cancel", pending, "--reason", "not needed", "--json"),
        jobtrail(db_dsn, "jobs", "replay", completed),
        jobtrail(db_dsn, "jobs", "cancel", completed),
        jobtrail(db_dsn, "jobs", "replay", str(uuid.uuid4())),
        jobtrail(db_dsn, "jobs", "replay", failed, "--status", "failed"),
    )
    assert replayed.code == 0, replayed.err
    assert f"replayed job {failed}" in replayed.out
    assert cancelled.code == 0, cancelled.err
    assert json.loads(cancelled.out)["job_id"] == pending
    one_line_error(
        not_replayable, 1, f"job {completed} is completed", "only failed jobs and cancelled jobs"
    )
    one_line_error(not_cancellable, 1, "only pending, processing or retrying jobs can be cancelled")
    one_line_error(unknown, 1, "no job with id")
    one_line_error(both, 2, "give a job ID or filters, not both")

    again = await dispatcher.load(failed)
    assert again is not None and again.status == "pending" and again.dispatch == 2
    stopped = await dispatcher.load(pending)
    assert stopped is not None and stopped.status == "cancelled"
    for job_id in (failed, pending):
        shown = await jobtrail(db_dsn, "jobs", "show", job_id, "--json")
        last = json.loads(shown.out)["events"][-1]
        assert last["actor"] == f"cli:{getpass.getuser()}", "the operator is recorded"


async def test_bulk_replay_asks_first_then_replays_what_the_filters_select(
    db_dsn: str, dispatcher: jobstore.Dispatcher
) -> None:
    cleanups = [await failed_job(dispatcher, "cleanup-old-data", f"disk {n}") for n in range(3)]
    webhook = await failed_job(dispatcher, "process-webhook", "HTTP 500")
    select = ("jobs", "replay", "--status", "failed", "--type", "cleanup-old-data")

    declined, not_replayable = await asyncio.gather(
        jobtrail(db_dsn, *select, stdin="n\n"),
        jobtrail(db_dsn, "jobs", "replay", "--status", "completed", "--yes"),
    )
    assert declined.code == 1
    assert "Replay 3 failed job(s) of type cleanup-old-data?" in declined.err
    for job_id in cleanups:
        state = await dispatcher.load(job_id)
        assert state is not None and state.status == "failed", "nothing replayed when declined"
    one_line_error(not_replayable, 2, "--status: 'completed' jobs cannot be replayed")

    replayed = await jobtrail(db_dsn, *select, "--yes", "--json")
    assert replayed.code == 0, replayed.err
    outcome = json.loads(replayed.out)
    assert outcome["selected"] == 3 and outcome["replayed"] == 3 and outcome["skipped"] == []
    assert set(outcome["replayed_job_ids"]) == set(cleanups)
    for job_id in cleanups:
        state = await dispatcher.load(job_id)
        assert state is not None and state.status == "pending" and state.source == "replay"
    untouched = await dispatcher.load(webhook)
    assert untouched is not None and untouched.status == "failed"

    for job_id in cleanups[:2]:
        await dispatcher.update_job_execution(job_id, {"status": "processing"})
        await dispatcher.update_job_execution(job_id, {"status": "failed", "error": "again"})
    confirmed = await jobtrail(db_dsn, *select, stdin="y\n")
    assert confirmed.code == 0, confirmed.err
    assert "replayed 2 of 2 jobs" in confirmed.out


@pytest.fixture
async def unmigrated_db(server_dsn: str) -> AsyncIterator[str]:
    name = pg.unique_name("jobtrail_cli")
    conn = await asyncpg.connect(server_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield pg.with_database(server_dsn, name)
    await pg.drop(server_dsn, name)


async def test_an_unreachable_or_unmigrated_database_is_one_clear_line(unmigrated_db: str) -> None:
    commands = [
        ("jobs", "list"),
        ("enqueue", "cleanup-old-data", "--payload", '{"retention": 1}'),
        ("jobs", "cancel", str(uuid.uuid4())),
        ("stats",),
        ("events", "tail"),
    ]
    needing_the_schema = [
        commands[0],
        ("relay", "status"),
        ("projections", "status"),
        ("projections", "rebuild", "--json"),
    ]
    results = await asyncio.gather(
        *(jobtrail(UNREACHABLE, *c) for c in commands),
        *(jobtrail(unmigrated_db, *c) for c in needing_the_schema),
    )
    for result in results[: len(commands)]:
        one_line_error(result, 1, f"cannot connect to PostgreSQL at {UNREACHABLE}")
    for result in results[len(commands) :]:
        one_line_error(result, 1, "lacks", "run `jobtrail db migrate` first")


@pytest.mark.slow
async def test_a_read_never_hangs_when_another_process_leads_the_projections(
    db_dsn: str, dispatcher: jobstore.Dispatcher
) -> None:
    """Another process holds the projections' leadership but applies nothing: warn, show."""
    leader = await asyncpg.connect(db_dsn)
    try:
        for projection in projections.builtin_projections():
            await leader.execute("SELECT pg_advisory_lock(72440125, hashtext($1))", projection.name)
        await dispatcher.enqueue("cleanup-old-data", {"retention": 1})
        started = time.monotonic()
        result = await jobtrail(db_dsn, "jobs", "list", "--json")
        elapsed = time.monotonic() - started
    finally:
        await leader.close()
    assert result.code == 0, result.err
    assert json.loads(result.out)["items"] == [], "the views were not caught up"
    assert result.err.startswith("warning: the views may be stale: ")
    assert len(result.err.strip().splitlines()) == 1
    assert elapsed < 30


def _cell(line: str, index: int) -> str:
    cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
    return cells[index] if len(cells) > index else ""


async def test_show_and_list_redact_secrets_unless_raw(
    db_dsn: str, dispatcher: jobstore.Dispatcher
) -> None:
    job_id = await failed_job(dispatcher, "cleanup-old-data", "login refused: password=hunter2")
    shown, listed, raw, table = await asyncio.gather(
        jobtrail(db_dsn, "jobs", "show", job_id, "--json"),
        jobtrail(db_dsn, "jobs", "list", "--json"),
        jobtrail(db_dsn, "jobs", "show", job_id, "--json", "--raw"),
        jobtrail(db_dsn, "jobs", "show", job_id),
    )
    for result in (shown, listed, table):
        assert result.code == 0, result.err
        assert "hunter2" not in result.out and "[redacted]" in result.out
    assert "password=hunter2" in raw.out
