"""The outbox relay against qstash_local through the official SDK: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator

import orjson
import pytest
from qstash import AsyncQStash

import jobstore
import qstash_local
from jobstore import dispatcher as dispatcher_module
from jobstore import job_events
from jobstore.dispatcher import Dispatcher, JobRequest
from jobstore.options import QSTASH_RETRY_HEADROOM
from jobstore.relay import Relay, RelayConfig, RelayCrash
from tests.qstash_support import FAST, Harness, eventually, running

WELCOME = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}
EMAIL_PATH = "/api/jobs/send-email"


@pytest.fixture
async def qstash() -> AsyncIterator[Harness]:
    async with running() as harness:
        yield harness


_CLIENTS: list[AsyncQStash] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _CLIENTS:
        await _CLIENTS.pop().http._client.aclose()


def client_for(url: str) -> AsyncQStash:
    """An SDK client (closed after the test) without the SDK's own retries."""
    client = AsyncQStash(FAST.token, base_url=url, retry=False)
    _CLIENTS.append(client)
    return client


def make_relay(store: jobstore.EventStore, dsn: str, harness: Harness, **config: object) -> Relay:
    client = client_for(harness.server.url)
    return Relay(store, dsn, client, RelayConfig(public_url=harness.sink.base, **config))  # type: ignore[arg-type]


_TASKS: dict[int, asyncio.Task[None]] = {}


@contextlib.asynccontextmanager
async def running_relay(relay: Relay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    _TASKS[id(relay)] = task
    try:
        yield task
    finally:
        await stop_relay(relay)


async def stop_relay(relay: Relay) -> None:
    """Stop a running relay (as its host dying would), releasing its lead."""
    task = _TASKS.pop(id(relay), None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def settle(harness: Harness, seconds: float = 0.3) -> None:
    """Give QStash time to deliver anything more it would (used before asserting 'once')."""
    await asyncio.sleep(seconds)


async def test_enqueued_job_is_published_with_the_wire_envelope(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    dispatcher = Dispatcher(store)
    job_id = await dispatcher.enqueue(
        "send-email", WELCOME, {"user_id": 7}, {"headers": {"X-Tenant": "acme"}, "retries": 2}
    )
    relay = make_relay(store, db_dsn, qstash)
    assert await relay.run_until_caught_up() == 1

    (delivery,) = await eventually(lambda: qstash.sink.at(EMAIL_PATH), what="delivery")
    body = orjson.loads(delivery.body)
    assert body["job_id"] == job_id
    assert body["dispatch"] == 1
    assert body["type"] == "send-email"
    assert body["payload"]["to"]["$enc"] == "v1", "personal fields travel sealed"
    assert await store.keys.reveal(body["payload"]) == WELCOME
    assert body["metadata"]["user_id"] == 7
    assert delivery.headers["X-Tenant"] == "acme"
    message_id = delivery.headers["Upstash-Message-Id"]
    message = await qstash.client.message.get(message_id)
    assert message.max_retries == 2 + QSTASH_RETRY_HEADROOM, "the host owns the budget"
    assert message.failure_callback == qstash.sink.base + "/_jobtrail/qstash/failure"
    saved = await store.pool.fetchval(
        "SELECT message_id FROM jobtrail.relay_messages WHERE job_id = $1", job_id
    )
    assert saved == message_id


async def test_delayed_job_is_published_not_before_its_time(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    result = await Dispatcher(store).enqueue_with_position(
        "send-email", WELCOME, None, {"delay": 3600}
    )
    relay = make_relay(store, db_dsn, qstash)
    await relay.run_until_caught_up()
    message_id = await store.pool.fetchval("SELECT message_id FROM jobtrail.relay_messages")
    message = await qstash.client.message.get(message_id)
    assert message.not_before >= (await _dispatched_at(store, result.job_id)) + 3590
    await settle(qstash)
    assert qstash.sink.at(EMAIL_PATH) == []


async def _dispatched_at(store: jobstore.EventStore, job_id: str) -> float:
    (recorded,) = await store.read_stream(f"job-{job_id}")
    return recorded.recorded_at.timestamp()


async def test_crash_after_publish_republishes_and_delivers_once(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    """Fault injection: the relay stops after publishing, before saving its checkpoint."""
    await Dispatcher(store).enqueue("send-email", WELCOME)
    crashing = make_relay(store, db_dsn, qstash, fault="crash_after_publish")
    with pytest.raises(RelayCrash):
        await crashing.run_until_caught_up()
    assert await store.pool.fetchval("SELECT count(*) FROM jobtrail.checkpoints") == 0

    restarted = make_relay(store, db_dsn, qstash)
    assert await restarted.run_until_caught_up() == 1, "the batch is published again"
    await eventually(lambda: qstash.sink.at(EMAIL_PATH), what="delivery")
    await settle(qstash)
    assert len(qstash.sink.at(EMAIL_PATH)) == 1, "QStash's deduplication dropped the copy"
    assert await restarted.run_until_caught_up() == 0, "the checkpoint now covers it"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_qstash_down_during_enqueue_then_back_delivers_once(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    port = _free_port()
    client = client_for(f"http://127.0.0.1:{port}")
    relay = Relay(
        store,
        db_dsn,
        client,
        RelayConfig(public_url=qstash.sink.base, max_backoff=0.2, idle_poll=0.5),
    )
    async with running_relay(relay):
        job_id = await Dispatcher(store).enqueue("send-email", WELCOME)
        await asyncio.sleep(0.5)  # the relay is backing off against a closed port
        execution = await Dispatcher(store).get_job_execution_by_job_id(job_id)
        assert execution is not None
        assert execution.status == "pending"
        async with qstash_local.serve(FAST, host="127.0.0.1", port=port) as revived:
            revived.state.current_key, revived.state.next_key = (
                qstash.state.current_key,
                qstash.state.next_key,
            )
            await eventually(lambda: qstash.sink.at(EMAIL_PATH), within=10, what="delivery")
            await settle(qstash)
    assert len(qstash.sink.at(EMAIL_PATH)) == 1


async def test_cancelled_job_has_its_pending_qstash_message_cancelled(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    dispatcher = Dispatcher(store)
    job_id = await dispatcher.enqueue("send-email", WELCOME, None, {"delay": 3600})
    relay = make_relay(store, db_dsn, qstash)
    await relay.run_until_caught_up()
    message_id = await store.pool.fetchval("SELECT message_id FROM jobtrail.relay_messages")

    await dispatcher.cancel(job_id, "changed my mind")
    await relay.run_until_caught_up()

    assert "CANCELED" in await qstash.events(message_id)


async def test_replay_is_published_as_a_new_dispatch(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    dispatcher = Dispatcher(store)
    job_id = await dispatcher.enqueue("send-email", WELCOME)
    relay = make_relay(store, db_dsn, qstash)
    await relay.run_until_caught_up()
    await eventually(lambda: qstash.sink.at(EMAIL_PATH), what="first delivery")
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": "failed", "error": "boom"})
    await dispatcher.replay_job(job_id)
    await relay.run_until_caught_up()

    deliveries = await eventually(
        lambda: len(qstash.sink.at(EMAIL_PATH)) == 2 and qstash.sink.at(EMAIL_PATH),
        what="replay delivery",
    )
    assert [orjson.loads(d.body)["dispatch"] for d in deliveries] == [1, 2]


async def test_schedule_dispatches_are_never_published(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    await store.append(
        "job-00000000-0000-0000-0000-000000000001",
        [
            job_events.JobDispatched(
                job_id="00000000-0000-0000-0000-000000000001",
                dispatch=1,
                job_type="send-email",
                payload=WELCOME,
                options={"endpoint": EMAIL_PATH},
                source="schedule",
            )
        ],
    )
    relay = make_relay(store, db_dsn, qstash)
    assert await relay.run_until_caught_up() == 1
    assert relay.published == 0
    await settle(qstash)
    assert qstash.sink.at(EMAIL_PATH) == []


async def test_two_relays_never_both_publish(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    relays = [make_relay(store, db_dsn, qstash, leader_retry=0.1, idle_poll=0.2) for _ in range(2)]
    async with running_relay(relays[0]), running_relay(relays[1]):
        ids = await Dispatcher(store).enqueue_many(
            [jobstore.dispatcher.JobRequest("send-email", WELCOME) for _ in range(30)]
        )
        await eventually(
            lambda: len(qstash.sink.at(EMAIL_PATH)) >= 30, within=10, what="30 deliveries"
        )
        await settle(qstash)
    delivered = [orjson.loads(d.body)["job_id"] for d in qstash.sink.at(EMAIL_PATH)]
    assert sorted(delivered) == sorted(ids)
    assert sorted(r.published for r in relays) == [0, 30], "only the leader published"


async def test_leadership_passes_to_the_other_relay_when_the_leader_stops(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    first = make_relay(store, db_dsn, qstash, leader_retry=0.1, idle_poll=0.2)
    second = make_relay(store, db_dsn, qstash, leader_retry=0.1, idle_poll=0.2)
    dispatcher = Dispatcher(store)
    async with running_relay(first):
        await dispatcher.enqueue("send-email", WELCOME)
        await eventually(lambda: len(qstash.sink.at(EMAIL_PATH)) == 1, what="first delivery")
        async with running_relay(second):
            await asyncio.sleep(0.3)  # the second relay waits for the lead
            assert second.published == 0
            await stop_relay(first)
            await dispatcher.enqueue("send-email", WELCOME)
            await eventually(lambda: second.published >= 1, within=10, what="takeover")
            await eventually(lambda: len(qstash.sink.at(EMAIL_PATH)) == 2, what="2nd delivery")
            await settle(qstash)
    job_ids = [orjson.loads(d.body)["job_id"] for d in qstash.sink.at(EMAIL_PATH)]
    assert len(job_ids) == len(set(job_ids)) == 2, "each job delivered once"


async def test_schedules_are_created_paused_and_reconciled_in_qstash(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    dispatcher = Dispatcher(store)
    schedule_id = await dispatcher.schedule("cleanup-old-data", "0 2 * * *", {"retention": 30})
    relay = make_relay(store, db_dsn, qstash)
    await relay.run_until_caught_up()
    remote = await qstash.client.schedule.get(schedule_id)
    assert remote.cron == "0 2 * * *"
    assert remote.destination == qstash.sink.base + "/api/jobs/cleanup-old-data"
    assert orjson.loads(remote.body or "{}")["schedule_id"] == schedule_id

    await dispatcher.schedules.pause(schedule_id)
    await relay.run_until_caught_up()
    assert (await qstash.client.schedule.get(schedule_id)).paused

    # QStash loses its state (a restarted qstash_local): reconciliation restores it.
    await qstash.client.schedule.delete(schedule_id)
    assert await relay.reconcile_schedules() == 1
    restored = await qstash.client.schedule.get(schedule_id)
    assert restored.paused
    assert await relay.reconcile_schedules() == 0

    await dispatcher.schedules.delete(schedule_id)
    await relay.run_until_caught_up()
    assert schedule_id not in [s.schedule_id for s in await qstash.client.schedule.list()]


HOOK = {"url": "https://hooks.example.com/in", "event": "order.paid"}
WEBHOOK_PATH = "/api/jobs/process-webhook"


async def test_the_users_callback_is_never_handed_to_qstash(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    """QStash would call it after every attempt, outside the host's address policy."""
    await Dispatcher(store).enqueue(
        "process-webhook", HOOK, None, {"callback": "https://hooks.example.com/done"}
    )
    relay = make_relay(store, db_dsn, qstash)
    await relay.run_until_caught_up()

    message_id = await store.pool.fetchval("SELECT message_id FROM jobtrail.relay_messages")
    message = await qstash.client.message.get(message_id)
    assert message.callback is None
    assert message.failure_callback == qstash.sink.base + "/_jobtrail/qstash/failure"


async def test_a_job_at_the_message_limit_is_published_and_one_byte_more_is_refused(
    store: jobstore.EventStore, db_dsn: str, qstash: Harness
) -> None:
    """Enqueue's size check counts the whole envelope exactly as the SDK publishes it."""
    dispatcher = Dispatcher(store)
    payload = {**HOOK, "body": {"blob": "é" * (40 * 1024) + "x" * (400 * 1024)}}

    def metadata(note_length: int) -> dict[str, object]:
        return {"created_at": "2030-01-01T00:00:00Z", "note": "n" * note_length}

    probe = dispatcher._dispatched(JobRequest("process-webhook", payload, metadata(0)))
    published = len(json.dumps(jobstore.envelope.job_body(jobstore.protect.stand_in(probe))))
    fill = dispatcher_module.MAX_MESSAGE_BYTES - published

    with pytest.raises(jobstore.JobValidationError, match="at most 1048576 bytes"):
        await dispatcher.enqueue("process-webhook", payload, metadata(fill + 1))
    job_id = await dispatcher.enqueue("process-webhook", payload, metadata(fill))
    relay = make_relay(store, db_dsn, qstash)
    await relay.run_until_caught_up()

    (delivery,) = await eventually(lambda: qstash.sink.at(WEBHOOK_PATH), what="delivery")
    assert len(delivery.body) == dispatcher_module.MAX_MESSAGE_BYTES
    assert orjson.loads(delivery.body)["job_id"] == job_id
    assert [e.type_name for e in await _events(store, job_id)] == ["job.dispatched"]


async def _events(store: jobstore.EventStore, job_id: str) -> list[jobstore.Event]:
    return [r.event for r in await store.read_stream(f"job-{job_id}")]
