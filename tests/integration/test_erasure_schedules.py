"""Schedules' personal data against a real PostgreSQL: sealed with the schedule's own key,
erased (and the schedule deleted) with its user or organization; outcome sealing without a
second key read for a job that has no key."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

import jobstore
from jobstore import change, erasure, keyring, protect
from jobstore.job_state import JobState
from tests.projection_support import attempt_failed, completed, dispatched, new_job_id, started

USER, ORGANIZATION = 61, 9
ADDRESS = "grace-schedule@example.com"
EMAIL = {"template": "welcome", "to": ADDRESS, "data": {"recipient_name": "Grace Hopper"}}


@pytest.fixture
def dispatcher(store: jobstore.EventStore) -> jobstore.Dispatcher:
    return jobstore.Dispatcher(store)


async def _schedule(dispatcher: jobstore.Dispatcher, metadata: dict[str, Any]) -> str:
    return await dispatcher.schedule("send-email", "0 3 * * *", EMAIL, metadata)


async def _stored(pool: asyncpg.Pool, schedule_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT data::text FROM jobtrail.events WHERE stream_id = $1 ORDER BY version",
        f"schedule-{schedule_id}",
    )
    return [r["data"] for r in rows]


async def test_a_schedules_personal_fields_are_stored_sealed_with_its_own_key(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    schedule_id = await _schedule(dispatcher, {"user_id": USER, "organization_id": ORGANIZATION})

    (stored,) = await _stored(store.pool, schedule_id)
    assert ADDRESS not in stored and "Grace" not in stored and '"welcome"' in stored
    key = await store.pool.fetchrow(
        "SELECT job_id::text AS kid, schedule_id, user_id, organization_id"
        "  FROM jobtrail.data_keys WHERE schedule_id = $1",
        schedule_id,
    )
    assert key is not None and dict(key) == {
        "kid": keyring.schedule_key_id(schedule_id),
        "schedule_id": schedule_id,
        "user_id": USER,
        "organization_id": ORGANIZATION,
    }
    (listed,) = await dispatcher.schedules.list()
    assert protect.kids_in(listed.payload) == {key["kid"]}  # as stored: sealed
    (opened,) = await store.keys.reveal_all([listed])
    assert opened.payload == EMAIL


async def test_a_schedule_of_a_type_without_personal_fields_gets_no_key(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    schedule_id = await dispatcher.schedule("export-data", "0 3 * * *", {"user_id": USER})

    assert await store.pool.fetchval("SELECT count(*) FROM jobtrail.data_keys") == 0
    state = await dispatcher.schedules.get(schedule_id)
    assert state is not None and state.payload["user_id"] == USER


async def test_erasing_a_user_destroys_its_schedules_keys_and_deletes_them_once(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    mine = await _schedule(dispatcher, {"user_id": USER})
    theirs = await _schedule(dispatcher, {"user_id": USER + 1})
    already_deleted = await _schedule(dispatcher, {"user_id": USER})
    await dispatcher.schedules.delete(already_deleted)
    job_id = await dispatcher.send_welcome_email_async(
        {"to": ADDRESS, "recipient_name": "Grace"}, {"user_id": USER}
    )

    done = await erasure.erase(store, "user", USER, reason="request #9", actor="cli:dpo")
    again = await erasure.erase(store, "user", USER)

    assert done.job_ids == [job_id]
    assert done.schedule_ids == sorted([mine, already_deleted])
    assert (again.job_ids, again.schedule_ids, again.position) == ([], [], None)
    recorded = [e for e in await store.read_all(0, 1000) if e.type_name == "subject.erased"]
    assert len(recorded) == 1
    assert recorded[0].event == erasure.SubjectErased(
        subject="user",
        subject_id=str(USER),
        job_ids=[job_id],
        schedule_ids=sorted([mine, already_deleted]),
        reason="request #9",
    )
    history = await store.read_stream(f"schedule-{mine}")
    assert [e.type_name for e in history] == ["schedule.created", "schedule.deleted"]
    assert history[-1].metadata.get("actor") == "cli:dpo"
    assert history[-1].transaction == recorded[0].transaction  # one transaction
    deleted_before = await store.read_stream(f"schedule-{already_deleted}")
    assert [e.type_name for e in deleted_before].count("schedule.deleted") == 1
    # Its ciphertext stays in the log and opens to nothing; the other user's is intact.
    states = {s.schedule_id: s for s in await dispatcher.schedules.list(include_deleted=True)}
    opened = {s.schedule_id: s for s in await store.keys.reveal_all(list(states.values()))}
    assert opened[mine].payload["to"] == protect.ERASED and opened[mine].deleted
    assert opened[mine].payload["template"] == "welcome"
    assert opened[theirs].payload == EMAIL and not opened[theirs].deleted
    assert all(ADDRESS not in text for text in await _stored(store.pool, mine))


async def test_erasing_an_organization_deletes_its_schedules(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    schedule_id = await _schedule(dispatcher, {"organization_id": ORGANIZATION})

    done = await erasure.erase(store, "organization", ORGANIZATION)

    assert (done.job_ids, done.schedule_ids) == ([], [schedule_id])
    state = await dispatcher.schedules.get(schedule_id)
    assert state is not None and state.deleted


async def test_a_job_id_erasure_never_reaches_a_schedules_key(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    schedule_id = await _schedule(dispatcher, {"user_id": USER})

    done = await erasure.erase(store, "job", keyring.schedule_key_id(schedule_id))

    assert (done.job_ids, done.schedule_ids, done.position) == ([], [], None)
    (opened,) = await store.keys.reveal_all(await dispatcher.schedules.list())
    assert opened.payload == EMAIL


async def test_a_failed_schedule_creation_leaves_no_key_behind(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    """The key is made in the transaction of ``schedule.created``: an id taken makes none."""
    taken = await dispatcher.schedule("export-data", "0 3 * * *", {"user_id": USER})

    with pytest.raises(jobstore.JobError, match="already exists"):
        await dispatcher.schedules.create(
            "send-email", "0 3 * * *", EMAIL, {"user_id": USER}, schedule_id=taken
        )

    assert await store.pool.fetchval("SELECT count(*) FROM jobtrail.data_keys") == 0


# -- outcomes of jobs without a key (the host's path: jobstore.change with the key read
# with the job's stream) ----------------------------------------------------------------


async def _away(pool: asyncpg.Pool) -> None:
    await pool.execute("ALTER TABLE jobtrail.data_keys RENAME TO data_keys_away")


async def _back(pool: asyncpg.Pool) -> None:
    await pool.execute("ALTER TABLE jobtrail.data_keys_away RENAME TO data_keys")


async def _delivery_key(store: jobstore.EventStore, job_id: str) -> change.JobKey:
    """The job's key as a delivery reads it: with the job's stream, in one statement."""
    read = await change.load_with_key(store, job_id)
    assert read is not None
    return change.JobKey(read[1])


def _keyless(dispatch: int) -> change.JobKey:
    """A key read that found no key row while ``dispatch`` was the job's current one."""
    return change.JobKey(keyring.DeliveryKeys({}, exists=False, dispatch=dispatch))


async def _outcome(
    store: jobstore.EventStore, job_id: str, events: list[Any], key: change.JobKey | None
) -> Any:
    state = await change.load(store, job_id)
    assert isinstance(state, JobState)
    return await change.change(store, job_id, lambda s: (events, None), known=state, key=key)


async def test_an_outcome_of_a_job_known_without_key_reads_no_key(
    store: jobstore.EventStore,
) -> None:
    """The delivery found no key row for dispatch 1; its outcome is appended without a look
    at the key table (renamed away here to catch one) while dispatch 1 is current."""
    job_id = new_job_id()
    await store.append(f"job-{job_id}", [dispatched(job_id), started()])
    key = await _delivery_key(store, job_id)
    assert key.read is not None and (key.read.exists, key.read.dispatch) == (False, 1)
    await _away(store.pool)
    try:
        changed = await _outcome(store, job_id, [completed()], key)
        assert changed is not None and len(changed.positions) == 1
        with pytest.raises(jobstore.EventStoreError, match="the data key table failed"):
            # Not known keyless for a later dispatch: the key table is read.
            await _outcome(store, job_id, [dispatched(job_id, dispatch=2)], key)
    finally:
        await _back(store.pool)


async def test_a_job_with_a_key_gets_its_error_sealed_on_the_hosts_outcome_path(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    """What the host does for a job whose delivery found its key: the error quoting the
    address is sealed with it; a key read that found none for a dispatch that is not the
    current one is ignored (a later dispatch may have made a key): the key is read."""
    job_id = await dispatcher.send_welcome_email_async(
        {"to": ADDRESS, "recipient_name": "Grace"}, {"user_id": USER}
    )
    key = await _delivery_key(store, job_id)
    assert key.read is not None and key.read.exists and key.keys[job_id] is not None
    await store.append(f"job-{job_id}", [started()])
    refused = attempt_failed(message=f"550 <{ADDRESS}>: no such user", will_retry=True)
    await _outcome(store, job_id, [refused], key)
    await _outcome(store, job_id, [started(attempt=2)], _keyless(2))
    again = attempt_failed(attempt=2, message=f"550 <{ADDRESS}>: again", will_retry=True)
    await _outcome(store, job_id, [again], _keyless(2))  # the current dispatch is 1: ignored

    stored = await store.pool.fetch(
        "SELECT data::text FROM jobtrail.events WHERE stream_id = $1", f"job-{job_id}"
    )
    assert len(stored) == 5 and all(ADDRESS not in r["data"] for r in stored)
    opened = await store.keys.reveal(
        [r.event.to_json_data() for r in await store.read_stream(f"job-{job_id}")]
    )
    assert opened[2]["error_message"] == f"550 <{ADDRESS}>: no such user"
    assert opened[4]["error_message"] == f"550 <{ADDRESS}>: again"


async def test_a_delivery_tells_a_job_without_key_from_an_erased_one(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    plain = new_job_id()
    await store.append(f"job-{plain}", [dispatched(plain)])
    erased = await dispatcher.send_welcome_email_async(
        {"to": ADDRESS, "recipient_name": "Grace"}, {"user_id": USER}
    )
    await erasure.erase(store, "job", erased)

    without, gone = await _delivery_key(store, plain), await _delivery_key(store, erased)

    assert without.read is not None and gone.read is not None
    assert (without.read.exists, without.keys) == (False, {plain: None})
    assert (gone.read.exists, gone.keys) == (True, {erased: None})
