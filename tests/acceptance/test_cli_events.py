"""``jobtrail events tail [--follow]`` in a subprocess, against a real database."""

from __future__ import annotations

import asyncio
import json
import signal

import jobstore
from tests.cli_support import jobtrail, start


async def test_tail_prints_the_last_events_or_those_from_a_position(
    db_dsn: str, store: jobstore.EventStore
) -> None:
    dispatcher = jobstore.Dispatcher(store)
    jobs = [await dispatcher.enqueue("cleanup-old-data", {"retention": n}) for n in (1, 2, 3)]
    await dispatcher.update_job_execution(jobs[0], {"status": "processing"})

    last_two, from_two, human = await asyncio.gather(
        jobtrail(db_dsn, "events", "tail", "-n", "2", "--json"),
        jobtrail(db_dsn, "events", "tail", "--from", "2", "--limit", "2", "--json"),
        jobtrail(db_dsn, "events", "tail"),
    )
    for result in (last_two, from_two, human):
        assert result.code == 0, result.err
    tail = [json.loads(line) for line in last_two.out.splitlines()]
    assert [(e["position"], e["type"]) for e in tail] == [(3, "job.dispatched"), (4, "job.started")]
    assert tail[1]["stream_id"] == f"job-{jobs[0]}"
    assert tail[0]["data"]["payload"] == {"retention": 3}
    assert [json.loads(line)["position"] for line in from_two.out.splitlines()] == [2, 3]

    lines = human.out.splitlines()
    assert len(lines) == 4
    assert lines[0].split()[0] == "1" and f"job-{jobs[0]}" in lines[0]
    assert "job.dispatched" in lines[0] and '"retention":1' in lines[0]
    assert lines[3].split()[0] == "4" and "job.started" in lines[3]


async def test_follow_prints_each_event_as_it_commits_until_ctrl_c(
    db_dsn: str, store: jobstore.EventStore
) -> None:
    dispatcher = jobstore.Dispatcher(store)
    first = await dispatcher.enqueue("cleanup-old-data", {"retention": 1})
    proc = await start(db_dsn, "events", "tail", "--follow", "-n", "1", "--json")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        before = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert (before["position"], before["stream_id"]) == (1, f"job-{first}")

        second = await dispatcher.enqueue("cleanup-old-data", {"retention": 2})
        live = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert (live["position"], live["stream_id"]) == (2, f"job-{second}")
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0, "Ctrl-C ends a follow cleanly"
    assert await proc.stdout.read() == b""
    assert b"Traceback" not in await proc.stderr.read()
