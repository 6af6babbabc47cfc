"""Cancelling a job whose attempt is running says so: the attempt may still finish."""

from __future__ import annotations

import json
import time
import uuid

import asyncpg

import jobstore
from jobstore import job_events
from jobstore.dispatcher import Dispatcher
from tests.cli_support import jobtrail
from tests.integration.test_projection_api import CLEANUP, api_client

RUNNING = "cancel recorded; the running attempt may still finish"


async def _running_job(store: jobstore.EventStore) -> str:
    job_id = str(uuid.uuid4())
    await store.append(
        f"job-{job_id}",
        [
            job_events.JobDispatched(
                job_id=job_id,
                dispatch=1,
                job_type="cleanup-old-data",
                payload=CLEANUP,
                options={"endpoint": "/jobs/cleanup"},
            ),
            job_events.JobStarted(dispatch=1, attempt=1, lease_until=time.time() + 60),
        ],
        "no_stream",
    )
    return job_id


async def test_the_dispatcher_says_whether_an_attempt_was_running(
    store: jobstore.EventStore,
) -> None:
    dispatcher = Dispatcher(store)
    waiting = await dispatcher.enqueue("cleanup-old-data", CLEANUP)
    running = await _running_job(store)

    pending = await dispatcher.cancel(waiting, "not needed")
    busy = await dispatcher.cancel(running, "not needed")

    assert (pending.attempt_running, busy.attempt_running) == (False, True)
    assert pending.message == "cancelled; no further attempt will run"
    assert busy.message == RUNNING
    assert busy.position == await store.last_position()


async def test_the_api_and_the_cli_say_the_running_attempt_may_still_finish(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    by_api, by_cli = await _running_job(store), await _running_job(store)

    async with api_client(pool, db_dsn) as api:
        status, answer = await api.call("POST", f"/jobs/{by_api}/cancel", json={"reason": "x"})
    shown = await jobtrail(db_dsn, "jobs", "cancel", by_cli, "--reason", "x")
    as_json = await jobtrail(db_dsn, "jobs", "cancel", by_cli, "--json")

    assert status == 200, answer
    assert (answer["attempt_running"], answer["message"]) == (True, RUNNING)
    assert shown.code == 0, shown.err
    assert RUNNING in shown.out
    assert as_json.code == 1, "cancelled already"
    again = await jobtrail(db_dsn, "jobs", "cancel", by_api, "--json")
    assert again.code == 1
    fresh = await _running_job(store)
    printed = await jobtrail(db_dsn, "jobs", "cancel", fresh, "--json")
    assert printed.code == 0, printed.err
    assert json.loads(printed.out)["message"] == RUNNING
