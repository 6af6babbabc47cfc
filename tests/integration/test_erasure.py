"""Erasure against a real PostgreSQL: keys destroyed, views rebuilt alike, replays refused."""

from __future__ import annotations

import asyncpg
import pytest

import jobstore
import projections
from jobstore import erasure, protect
from tests.projection_support import (
    attempt_failed,
    completed,
    dispatched,
    failed,
    new_job_id,
    snapshot,
    started,
)

USER = 31
ADDRESS = "grace@example.com"


async def _email(dispatcher: jobstore.Dispatcher, user_id: int, to: str = ADDRESS) -> str:
    return await dispatcher.send_welcome_email_async(
        {"to": to, "recipient_name": "Grace Hopper"}, {"user_id": user_id}
    )


async def _fail(store: jobstore.EventStore, job_id: str) -> None:
    """Record a started attempt failing for good, its error quoting the address."""
    await store.append(
        f"job-{job_id}",
        [
            jobstore.job_events.JobStarted(dispatch=1, attempt=1, lease_until=0),
            jobstore.job_events.JobAttemptFailed(
                dispatch=1,
                attempt=1,
                error_type="SMTPRecipientsRefused",
                error_message=f"550 <{ADDRESS}>: no such user",
                traceback=f"Traceback ...\nSMTPRecipientsRefused: {ADDRESS}",
                will_retry=False,
            ),
            jobstore.job_events.JobFailed(
                dispatch=1,
                attempt=1,
                reason=f"refused {ADDRESS}",
                error_type="SMTPRecipientsRefused",
                error_message=f"550 <{ADDRESS}>: no such user",
            ),
        ],
    )


@pytest.fixture
def dispatcher(store: jobstore.EventStore) -> jobstore.Dispatcher:
    return jobstore.Dispatcher(store)


async def test_a_rebuild_after_an_erasure_gives_the_same_views(
    pool: asyncpg.Pool, db_dsn: str, store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    erased_job, kept_job = await _email(dispatcher, USER), await _email(dispatcher, USER + 1)
    await _fail(store, erased_job)
    await _fail(store, kept_job)
    runner = projections.ProjectionRunner(pool, db_dsn)
    await runner.run_until_caught_up()

    done = await erasure.erase(store, "user", USER, reason="GDPR article 17 request")
    await runner.run_until_caught_up()
    live = await snapshot(pool)
    await projections.rebuild(pool, db_dsn, batch_size=2)

    assert done.job_ids == [erased_job]
    assert await snapshot(pool) == live
    rows = {r["job_id"]: dict(r) for r in await pool.fetch("SELECT * FROM jobtrail.job_executions")}
    erased = await store.keys.reveal(rows[erased_job])
    kept = await store.keys.reveal(rows[kept_job])
    assert erased["payload"]["to"] == protect.ERASED
    assert ADDRESS not in str(erased)
    assert kept["payload"]["to"] == ADDRESS and ADDRESS in kept["last_error"]


async def test_every_text_of_a_job_is_stored_sealed_and_opens_with_its_key(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    job_id = await _email(dispatcher, USER)
    await _fail(store, job_id)

    stored = await store.pool.fetch(
        "SELECT data::text FROM jobtrail.events WHERE stream_id = $1", f"job-{job_id}"
    )
    history = [r.event.to_json_data() for r in await store.read_stream(f"job-{job_id}")]
    opened = await store.keys.reveal(history)

    assert all(ADDRESS not in r["data"] and "Grace" not in r["data"] for r in stored)
    assert opened[0]["payload"] == {
        "template": "welcome",
        "to": ADDRESS,
        "data": {"recipient_name": "Grace Hopper"},
    }
    assert opened[2]["traceback"].endswith(ADDRESS) and opened[3]["reason"] == f"refused {ADDRESS}"


async def test_an_append_holding_a_first_dispatch_without_personal_fields_reads_no_key(
    store: jobstore.EventStore,
) -> None:
    """Only a first dispatch carrying personal fields makes a job's key, so an append that
    holds a job's first dispatch without any never looks at the key table (renamed away here
    to catch a look), outcomes and replays included; a lone outcome still looks, and a job
    with personal fields still has its outcome sealed in the append that dispatches it."""
    plain, personal = new_job_id(), new_job_id()
    assert "to" in protect.declared("send-email")
    await store.pool.execute("ALTER TABLE jobtrail.data_keys RENAME TO data_keys_away")
    try:
        history = [dispatched(plain), started(), failed(), dispatched(plain, dispatch=2)]
        assert len(await store.append(f"job-{plain}", history)) == len(history)
        with pytest.raises(jobstore.EventStoreError, match="the data key table failed"):
            await store.append(f"job-{plain}", [started(dispatch=2), completed(dispatch=2)])
    finally:
        await store.pool.execute("ALTER TABLE jobtrail.data_keys_away RENAME TO data_keys")
    email = dispatched(
        personal, job_type="send-email", payload={"template": "welcome", "to": ADDRESS}
    )
    refused = attempt_failed(message=f"550 <{ADDRESS}>: no such user", will_retry=False)
    await store.append(f"job-{personal}", [email, started(), refused])

    stored = await store.pool.fetch(
        "SELECT data::text FROM jobtrail.events WHERE stream_id = $1", f"job-{personal}"
    )
    assert len(stored) == 3 and all(ADDRESS not in r["data"] for r in stored)
    opened = await store.keys.reveal(
        [r.event.to_json_data() for r in await store.read_stream(f"job-{personal}")]
    )
    assert opened[0]["payload"]["to"] == ADDRESS
    assert opened[2]["error_message"] == f"550 <{ADDRESS}>: no such user"


async def test_replaying_an_erased_job_is_refused_and_writes_nothing(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    job_id = await _email(dispatcher, USER)
    await _fail(store, job_id)
    await erasure.erase(store, "job", job_id)
    version = await store.stream_version(f"job-{job_id}")

    with pytest.raises(jobstore.JobError, match="personal data was erased") as caught:
        await dispatcher.replay_job(job_id, "try again")

    assert caught.value.code == "ERASED"
    assert await store.stream_version(f"job-{job_id}") == version


async def test_an_erasure_is_recorded_once_and_a_repeat_changes_nothing(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher
) -> None:
    mine = [await _email(dispatcher, USER), await _email(dispatcher, USER)]
    await _email(dispatcher, USER + 1)

    first = await erasure.erase(store, "user", str(USER), actor="cli:dpo")
    again = await erasure.erase(store, "user", USER)

    assert first.job_ids == sorted(mine) and first.position is not None
    assert (again.job_ids, again.position) == ([], None)
    recorded = [e for e in await store.read_all(0, 1000) if e.type_name == "subject.erased"]
    assert len(recorded) == 1 and recorded[0].metadata.get("actor") == "cli:dpo"
    assert recorded[0].event == erasure.SubjectErased(
        subject="user", subject_id=str(USER), job_ids=sorted(mine)
    )


@pytest.mark.parametrize(
    ("subject", "given", "problem"),
    [
        ("job", "not-a-uuid", "is not a UUID"),
        ("user", "0", "not a whole number >= 1"),
        ("organization", "12abc", "not a whole number >= 1"),
        ("team", "1", "not one of job, user, organization"),
    ],
)
async def test_a_bad_subject_is_a_clear_error_and_erases_nothing(
    store: jobstore.EventStore,
    dispatcher: jobstore.Dispatcher,
    subject: str,
    given: str,
    problem: str,
) -> None:
    job_id = await _email(dispatcher, USER)

    with pytest.raises(jobstore.JobValidationError) as caught:
        await erasure.erase(store, subject, given)  # type: ignore[arg-type]

    assert problem in caught.value.validation_errors[0]
    assert await store.keys.erased(job_id) is False
