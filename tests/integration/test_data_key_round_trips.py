"""A job's data key travels with the job's own statements (issue 21): the first dispatch's
append stores the key it was sealed with, a delivery reads the key with the job's stream,
and the outcome is sealed with the key the delivery read, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

import jobstore
from jobstore import change, erasure, job_events, protect
from jobstore.dispatcher import JobRequest
from jobstore.store import NO_STREAM, StreamAppend
from tests.projection_support import attempt_failed, dispatched, new_job_id, started

USER = 83
ADDRESS = "ada-keys@example.com"
EMAIL = {"template": "welcome", "to": ADDRESS, "data": {"recipient_name": "Ada"}}
WELCOME = {"to": ADDRESS, "recipient_name": "Ada"}
REFUSE_DISPATCHES = """
CREATE FUNCTION public.refuse_dispatch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dispatch refused by the test';
END $$;
CREATE TRIGGER refuse_dispatch BEFORE INSERT ON jobtrail.events FOR EACH ROW
    WHEN (NEW.event_type = 'job.dispatched') EXECUTE FUNCTION public.refuse_dispatch();
"""


@pytest.fixture
def dispatcher(store: jobstore.EventStore) -> jobstore.Dispatcher:
    return jobstore.Dispatcher(store)


async def _keys(pool: asyncpg.Pool) -> list[tuple[str, bytes]]:
    rows = await pool.fetch("SELECT job_id::text, wrapped_key FROM jobtrail.data_keys")
    return [(r["job_id"], bytes(r["wrapped_key"])) for r in rows]


async def _opened_payload(store: jobstore.EventStore, job_id: str) -> Any:
    (first, *_) = await store.read_stream(f"job-{job_id}")
    assert isinstance(first.event, job_events.JobDispatched)
    assert ADDRESS not in str(first.event.payload)  # stored sealed
    return await store.keys.reveal(first.event.payload)


def _email(job_id: str) -> job_events.JobDispatched:
    return dispatched(job_id, job_type="send-email", payload=EMAIL, metadata={"user_id": USER})


async def test_a_first_dispatch_the_database_refuses_leaves_no_data_key(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    """The key is stored by the dispatch's own statement: refused, it leaves no key (a key
    made by a statement of its own, committed before the append, stayed)."""
    await store.pool.execute(REFUSE_DISPATCHES)
    with pytest.raises(jobstore.EventStoreError, match="dispatch refused by the test"):
        await dispatcher.send_welcome_email_async(WELCOME, {"user_id": USER})
    with pytest.raises(jobstore.EventStoreError, match="dispatch refused by the test"):
        await dispatcher.enqueue_many([JobRequest("send-email", EMAIL, {"user_id": USER})])
    assert await _keys(store.pool) == []

    await store.pool.execute("DROP TRIGGER refuse_dispatch ON jobtrail.events")
    job_id = await dispatcher.send_welcome_email_async(WELCOME, {"user_id": USER})
    assert [kid for kid, _ in await _keys(store.pool)] == [job_id]
    assert (await _opened_payload(store, job_id))["to"] == ADDRESS


async def test_a_first_dispatch_of_a_job_that_has_a_key_is_sealed_with_that_key(
    store: jobstore.EventStore,
) -> None:
    """An earlier try of the dispatch stored the job's key: the append does not append the
    events it sealed with a new key, and seals them again with the stored one."""
    one, many = new_job_id(), new_job_id()
    for job_id in (one, many):  # the key alone, as a try whose append was lost would leave
        await store.keys.seal([(f"job-{job_id}", [_email(job_id)])])
    stored = sorted(await _keys(store.pool))

    assert await store.append(f"job-{one}", [_email(one)], NO_STREAM)
    (outcome,) = await store.append_each([StreamAppend(f"job-{many}", [_email(many)], NO_STREAM)])

    assert isinstance(outcome, list) and len(outcome) == 1
    assert sorted(await _keys(store.pool)) == stored  # the stored keys kept, no other
    assert await _opened_payload(store, one) == EMAIL
    assert await _opened_payload(store, many) == EMAIL


async def test_concurrent_enqueues_of_one_idempotency_key_make_one_job_with_one_key(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    metadata = {"user_id": USER, "idempotency_key": "welcome-ada"}
    ids = await asyncio.gather(
        *(dispatcher.send_welcome_email_async(WELCOME, metadata) for _ in range(8))
    )

    (job_id,) = set(ids)
    assert [kid for kid, _ in await _keys(store.pool)] == [job_id]
    assert len(await store.read_stream(f"job-{job_id}")) == 1
    assert (await _opened_payload(store, job_id))["to"] == ADDRESS


async def test_a_delivery_reads_the_key_with_the_stream_and_tells_keyless_from_erased(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    plain = new_job_id()
    await store.append(f"job-{plain}", [dispatched(plain)])
    sealed = await dispatcher.send_welcome_email_async(WELCOME, {"user_id": USER})
    erased = await dispatcher.send_welcome_email_async(WELCOME, {"user_id": USER})
    await erasure.erase(store, "job", erased)

    reads = {j: await change.load_with_key(store, j) for j in (plain, sealed, erased)}

    assert await change.load_with_key(store, new_job_id()) is None
    without, with_key, gone = (r[1] for r in reads.values() if r is not None)
    assert (without.exists, without.keys, without.dispatch) == (False, {plain: None}, 1)
    assert (gone.exists, gone.keys, gone.dispatch) == (True, {erased: None}, 1)
    assert with_key.exists and with_key.dispatch == 1
    state = reads[sealed]
    assert state is not None
    assert (protect.opened(state[0].payload, with_key.keys) or {})["to"] == ADDRESS


async def test_the_outcome_is_sealed_with_the_key_the_delivery_read_without_reading_it(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    """The key table is renamed away after the delivery's read: the outcome quoting the
    address is still appended, sealed with the job's key, and opens with it."""
    job_id = await dispatcher.send_welcome_email_async(WELCOME, {"user_id": USER})
    key = change.JobKey()
    await change.change(store, job_id, lambda s: ([started()], None), key=key)
    assert key.read is not None and key.read.exists and key.read.dispatch == 1
    known = await change.load(store, job_id)
    refused = attempt_failed(message=f"550 <{ADDRESS}>: no such user")

    await store.pool.execute("ALTER TABLE jobtrail.data_keys RENAME TO data_keys_away")
    try:
        changed = await change.change(
            store, job_id, lambda s: ([refused], None), known=known, key=key
        )
    finally:
        await store.pool.execute("ALTER TABLE jobtrail.data_keys_away RENAME TO data_keys")

    assert changed is not None and len(changed.positions) == 1
    stored = await store.pool.fetch(
        "SELECT data::text FROM jobtrail.events WHERE stream_id = $1", f"job-{job_id}"
    )
    assert len(stored) == 3 and all(ADDRESS not in r["data"] for r in stored)
    (*_, last) = await store.read_stream(f"job-{job_id}")
    opened = await store.keys.reveal(last.event.to_json_data())
    assert opened["error_message"] == f"550 <{ADDRESS}>: no such user"
