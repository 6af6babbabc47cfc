"""The seed's createJobExecution: here it records and dispatches a job, and says so."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from qstash import AsyncQStash

import jobstore
from jobstore import job_events
from jobstore.dispatcher import Dispatcher
from jobstore.relay import Relay, RelayConfig
from tests.qstash_support import FAST, Harness, eventually, running

WELCOME = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}


@pytest.fixture
async def qstash() -> AsyncIterator[Harness]:
    async with running() as harness:
        yield harness


async def test_a_seed_job_execution_is_dispatched_and_delivered(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    job_id = str(uuid.uuid4())
    execution = await Dispatcher(store).create_job_execution(
        {
            "jobId": job_id,
            "jobType": "send-email",
            "status": "pending",
            "payload": WELCOME,
            "userId": 5,
            "organizationId": 9,
        }
    )
    assert (execution.job_id, execution.status) == (job_id, "pending")
    assert (execution.user_id, execution.organization_id) == (5, 9)

    client = AsyncQStash(FAST.token, base_url=qstash.server.url, retry=False)
    try:
        relay = Relay(store, db_dsn, client, RelayConfig(public_url=qstash.sink.base))
        assert await relay.run_until_caught_up() == 1, "the relay publishes it like an enqueue"
        (delivery,) = await eventually(
            lambda: qstash.sink.at("/api/jobs/send-email"), what="delivery"
        )
    finally:
        await client.http._client.aclose()
    body = orjson.loads(delivery.body)
    opened = await store.keys.reveal(body["payload"])  # personal fields travel sealed
    assert (body["job_id"], body["dispatch"], opened) == (job_id, 1, WELCOME)
    assert body["metadata"]["user_id"] == 5


async def test_the_seed_name_is_an_alias_and_records_the_actor(store: jobstore.EventStore) -> None:
    assert Dispatcher.create_job_execution is Dispatcher.dispatch_job_execution
    execution = await Dispatcher(store).dispatch_job_execution(
        {"job_type": "send-email", "payload": WELCOME, "metadata": {"userId": 3}},
        actor="cli:ada",
    )
    (recorded,) = await store.read_stream(f"job-{execution.job_id}")
    assert isinstance(recorded.event, job_events.JobDispatched)
    assert (recorded.event.dispatch, recorded.event.source) == (1, "api")
    assert recorded.event.metadata["user_id"] == 3
    assert "cli:ada" in str(recorded.metadata)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"jobType": "send-email", "payload": WELCOME, "attempts": 0}, "attempts: not a field"),
        ({"job_type": "send-email", "jobType": "export-data", "payload": WELCOME}, "jobType"),
        (
            {
                "job_type": "send-email",
                "payload": WELCOME,
                "user_id": 5,
                "metadata": {"user_id": 6},
            },
            "user_id: disagrees with metadata.user_id=6",
        ),
        ({"job_type": "send-email", "payload": WELCOME, "userId": 5, "user_id": 6}, "userId"),
        ({"job_type": "send-email", "payload": WELCOME, "metadata": [1]}, "metadata"),
    ],
)
async def test_fields_a_new_job_cannot_mean_are_refused_and_nothing_is_written(
    store: jobstore.EventStore, data: dict[str, object], says: str
) -> None:
    with pytest.raises(jobstore.JobValidationError) as caught:
        await Dispatcher(store).dispatch_job_execution(data)
    assert says in " ".join(caught.value.validation_errors)
    assert await store.read_all() == []
