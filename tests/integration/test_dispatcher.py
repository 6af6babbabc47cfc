"""The dispatcher on a real PostgreSQL: validation, idempotency, cancel, replay, schedules."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pydantic
import pytest
import structlog

import jobstore
from jobstore import job_events
from jobstore.dispatcher import Dispatcher, JobRequest

WELCOME = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}


@pytest.fixture
def dispatcher(store: jobstore.EventStore) -> Dispatcher:
    return Dispatcher(store)


async def _events(store: jobstore.EventStore, job_id: str) -> list[jobstore.Event]:
    return [r.event for r in await store.read_stream(f"job-{job_id}")]


async def test_enqueue_records_a_pending_dispatch_with_the_job_config(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    job_id = await dispatcher.enqueue("send-email", WELCOME, {"user_id": 123}, {"delay": 60})

    assert uuid.UUID(job_id)
    (event,) = await _events(store, job_id)
    assert isinstance(event, job_events.JobDispatched)
    assert (event.dispatch, event.source, event.job_type) == (1, "api", "send-email")
    assert event.options.retries == 3
    assert event.options.endpoint == "/api/jobs/send-email"
    assert event.options.qstash_timeout > event.options.timeout
    assert event.options.not_before is not None
    execution = await dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert (execution.status, execution.user_id) == ("pending", 123)


async def test_enqueue_with_position_reports_where_the_job_landed(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    result = await dispatcher.enqueue_with_position("send-email", WELCOME)
    assert result.created
    assert result.position == await store.last_position()


async def test_invalid_payload_lists_every_problem_and_writes_nothing(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    bad = {"template": "password-reset", "to": "not-an-email", "data": {}}
    with pytest.raises(jobstore.JobValidationError) as caught:
        await dispatcher.enqueue("send-email", bad)
    problems = caught.value.validation_errors
    assert any(p.startswith("payload.to:") for p in problems), problems
    assert any("reset_url" in p for p in problems), problems
    assert caught.value.code == "VALIDATION_ERROR"
    assert await store.last_position() == 0


@pytest.mark.parametrize(
    ("payload", "options", "expected"),
    [
        ({**WELCOME, "data": {"recipient_name": "A\x00da"}}, None, "NUL"),
        ({**WELCOME, "data": {"recipient_name": "x" * 300}}, None, "recipient_name"),
        (WELCOME, {"delay": -1}, "options.delay"),
        (WELCOME, {"delay": timedelta(days=30)}, "options.delay"),
        (WELCOME, {"headers": {"X-Ok": "a\r\nInjected: 1"}}, "line break"),
        (WELCOME, {"headers": {"Upstash-Retries": "9"}}, "set by jobtrail"),
        (WELCOME, {"retries": 1000}, "options.retries"),
        (WELCOME, {"surprise": True}, "options.surprise"),
    ],
)
async def test_bad_input_is_a_validation_error_and_writes_nothing(
    dispatcher: Dispatcher,
    store: jobstore.EventStore,
    payload: dict,
    options: dict | None,
    expected: str,
) -> None:
    with pytest.raises(jobstore.JobValidationError, match=expected):
        await dispatcher.enqueue("send-email", payload, None, options)
    assert await store.last_position() == 0


async def test_oversized_payload_is_refused(dispatcher: Dispatcher) -> None:
    body = {"blob": "x" * (600 * 1024)}
    payload = {"url": "https://example.com/hook", "event": "big", "body": body}
    with pytest.raises(jobstore.JobValidationError, match="limit is"):
        await dispatcher.enqueue("process-webhook", payload)


async def test_unknown_job_type_names_the_known_ones(dispatcher: Dispatcher) -> None:
    with pytest.raises(jobstore.JobError, match="send-email") as caught:
        await dispatcher.enqueue("send-fax", {})
    assert caught.value.code == "UNKNOWN_JOB_TYPE"
    with pytest.raises(jobstore.JobError, match="unknown job type"):
        jobstore.get_job_config("send-fax")


async def test_same_idempotency_key_returns_the_same_job_even_concurrently(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    metadata = {"organization_id": 42, "idempotency_key": "signup-7"}
    ids = await asyncio.gather(
        *(dispatcher.enqueue("send-email", WELCOME, metadata) for _ in range(20))
    )
    assert len(set(ids)) == 1
    assert len(await _events(store, ids[0])) == 1, "one dispatch, not twenty"
    again = await dispatcher.enqueue_with_position("send-email", WELCOME, metadata)
    assert (again.job_id, again.created, again.position) == (ids[0], False, None)
    other_org = await dispatcher.enqueue(
        "send-email", WELCOME, {"organization_id": 43, "idempotency_key": "signup-7"}
    )
    assert other_org != ids[0]


async def test_enqueue_many_writes_all_in_one_go_or_nothing(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    good = [JobRequest("send-email", WELCOME) for _ in range(50)]
    ids = await dispatcher.enqueue_many(good)
    assert len(set(ids)) == 50
    assert len(await store.read_all(0, 1000)) == 50

    before = await store.last_position()
    bad = [*good[:3], JobRequest("send-email", {"template": "welcome", "to": "x"})]
    with pytest.raises(jobstore.JobValidationError, match=r"jobs\[3\]"):
        await dispatcher.enqueue_many(bad)
    assert await store.last_position() == before


async def test_enqueue_many_keeps_existing_idempotent_jobs(dispatcher: Dispatcher) -> None:
    meta = {"idempotency_key": "k1"}
    first = await dispatcher.enqueue("send-email", WELCOME, meta)
    ids = await dispatcher.enqueue_many(
        [JobRequest("send-email", WELCOME, meta), JobRequest("send-email", WELCOME)]
    )
    assert ids[0] == first
    assert ids[1] != first


async def test_cancel_stops_a_pending_job_and_refuses_a_finished_one(
    dispatcher: Dispatcher,
) -> None:
    job_id = await dispatcher.enqueue("send-email", WELCOME)
    await dispatcher.cancel(job_id, "user asked")
    execution = await dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert execution.status == "cancelled"
    with pytest.raises(jobstore.JobError, match="cancelled") as caught:
        await dispatcher.cancel(job_id)
    assert caught.value.code == "JOB_FINISHED"
    with pytest.raises(jobstore.JobError) as missing:
        await dispatcher.cancel(str(uuid.uuid4()))
    assert missing.value.code == "JOB_NOT_FOUND"


async def test_replay_dispatches_a_failed_job_again_keeping_its_history(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    job_id = await dispatcher.enqueue("send-email", WELCOME)
    with pytest.raises(jobstore.JobError) as not_failed:
        await dispatcher.replay_job(job_id)
    assert not_failed.value.code == "NOT_REPLAYABLE"
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": "failed", "error": "smtp down"})

    await dispatcher.replay_job(job_id, "smtp is back")

    events = await _events(store, job_id)
    assert [e.type_name for e in events] == [
        "job.dispatched",
        "job.started",
        "job.failed",
        "job.dispatched",
    ]
    replay = events[-1]
    assert isinstance(replay, job_events.JobDispatched)
    assert (replay.dispatch, replay.source, replay.reason) == (2, "replay", "smtp is back")
    execution = await dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert (execution.status, execution.replay_count, execution.dispatch) == ("pending", 1, 2)


async def test_cancelled_job_that_never_completed_can_be_replayed(dispatcher: Dispatcher) -> None:
    job_id = await dispatcher.enqueue("send-email", WELCOME)
    await dispatcher.cancel(job_id)
    await dispatcher.replay_job(job_id)
    execution = await dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert execution.status == "pending"


async def test_seed_updates_append_events_and_refuse_nonsense(
    dispatcher: Dispatcher, store: jobstore.EventStore
) -> None:
    created = await dispatcher.create_job_execution(
        {"job_type": "send-email", "payload": WELCOME, "user_id": 5, "status": "pending"}
    )
    job_id = created.job_id
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": "completed", "duration_seconds": 2})
    execution = await dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert (execution.status, execution.duration_seconds, execution.user_id) == ("completed", 2, 5)
    with pytest.raises(jobstore.JobError, match="completed to processing") as caught:
        await dispatcher.update_job_execution(job_id, {"status": "processing"})
    assert caught.value.code == "INVALID_TRANSITION"
    with pytest.raises(jobstore.JobError, match="payload"):
        await dispatcher.update_job_execution(job_id, {"payload": {}})
    assert len(await _events(store, job_id)) == 3


async def test_email_helpers_enqueue_send_email_jobs(dispatcher: Dispatcher) -> None:
    job_id = await dispatcher.send_password_reset_email_async(
        {"to": "ada@example.com", "recipient_name": "Ada", "reset_url": "https://x.test/r/1"},
        {"user_id": 1},
    )
    execution = await dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert execution.payload["template"] == "password-reset"
    with pytest.raises(jobstore.JobValidationError, match="invitation_url"):
        await dispatcher.send_team_invitation_email_async(
            {"to": "b@example.com", "recipient_name": "B"}, {"user_id": 1}
        )


async def test_log_lines_carry_payload_keys_and_size_never_values(dispatcher: Dispatcher) -> None:
    with structlog.testing.capture_logs() as logs:
        await dispatcher.send_password_reset_email_async(
            {
                "to": "ada@example.com",
                "recipient_name": "Ada",
                "reset_url": "https://x.test/r/SECRET-TOKEN",
            },
        )
    line = next(entry for entry in logs if entry["event"] == "job dispatched")
    assert "SECRET-TOKEN" not in repr(line) and "ada@example.com" not in repr(line)
    assert line["payload_keys"] == ["data", "template", "to"] and line["payload_bytes"] > 0


@pytest.mark.parametrize(
    "cron",
    ["", "* * *", "61 * * * *", "every day", "CRON_TZ=Mars/Olympus 0 2 * * *"],
)
async def test_invalid_cron_is_a_validation_error_saying_why(
    dispatcher: Dispatcher, store: jobstore.EventStore, cron: str
) -> None:
    with pytest.raises(jobstore.JobValidationError, match="cron"):
        await dispatcher.schedule("cleanup-old-data", cron, {"retention": 30})
    assert await store.last_position() == 0


async def test_schedule_life_cycle_is_recorded_as_events(dispatcher: Dispatcher) -> None:
    schedule_id = await dispatcher.schedule(
        "cleanup-old-data",
        "CRON_TZ=Europe/Berlin 0 2 * * *",
        {"retention": 30},
        {"organization_id": 456},
    )
    schedules = dispatcher.schedules
    (listed,) = await schedules.list()
    assert (listed.schedule_id, listed.cron, listed.paused) == (
        schedule_id,
        "CRON_TZ=Europe/Berlin 0 2 * * *",
        False,
    )
    await schedules.pause(schedule_id)
    await schedules.pause(schedule_id)  # pausing twice changes nothing
    state = await schedules.get(schedule_id)
    assert state is not None
    assert (state.paused, state.version) == (True, 2)
    await schedules.resume(schedule_id)
    await schedules.delete(schedule_id)
    assert await schedules.list() == []
    with pytest.raises(jobstore.JobError, match="no schedule"):
        await schedules.pause(schedule_id)


class InvoicePayload(pydantic.BaseModel):
    invoice_id: int
    amount_cents: int = pydantic.Field(gt=0)


async def test_applications_register_their_own_job_types(store: jobstore.EventStore) -> None:
    registry = jobstore.default_registry()
    config = jobstore.JobConfig(
        type="charge-invoice", endpoint="/jobs/charge", retries=5, timeout=20
    )
    registry.register(config, InvoicePayload)
    dispatcher = Dispatcher(store, registry)

    job_id = await dispatcher.enqueue("charge-invoice", {"invoice_id": 9, "amount_cents": 100})
    execution = await dispatcher.get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert (execution.job_type, execution.max_retries) == ("charge-invoice", 5)
    with pytest.raises(jobstore.JobValidationError, match="amount_cents"):
        await dispatcher.enqueue("charge-invoice", {"invoice_id": 9, "amount_cents": 0})
    with pytest.raises(jobstore.JobError, match="already registered"):
        registry.register(config, InvoicePayload)
    with pytest.raises(jobstore.JobError, match="endpoint"):
        registry.register(config.model_copy(update={"type": "other"}), InvoicePayload)


HOOK = {"url": "https://hooks.example.com/in", "event": "order.paid"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"callback": "http://169.254.169.254/latest/meta-data/"}, "options.callback"),
        ({"failure_callback": "http://127.0.0.1/failed"}, "options.failure_callback"),
        ({"callback": "http://[::ffff:10.0.0.1]/done"}, "private address"),
        ({"callback": "http://localhost/done"}, "loopback name"),
        ({"callback": "https://hooks.example.com:25/done"}, "port 25 is not allowed"),
        ({"failure_callback": "ftp://hooks.example.com/x"}, "URL scheme should be"),
    ],
)
async def test_callbacks_outside_the_address_policy_are_refused_at_enqueue(
    dispatcher: Dispatcher, store: jobstore.EventStore, options: dict[str, str], expected: str
) -> None:
    with pytest.raises(jobstore.JobValidationError, match=expected):
        await dispatcher.enqueue("process-webhook", HOOK, None, options)
    assert await store.last_position() == 0


async def test_a_prebuilt_options_object_cannot_skip_the_policy(dispatcher: Dispatcher) -> None:
    options = jobstore.EnqueueJobOptions(callback="http://10.1.2.3/done")  # type: ignore[arg-type]

    with pytest.raises(jobstore.JobValidationError, match=r"10\.1\.2\.3 is a private address"):
        await dispatcher.enqueue("process-webhook", HOOK, None, options)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://198.51.100.7:25/relay", "port 25 is not allowed; allowed ports: 80, 443"),
        ("http://10.0.0.8/hook", "payload.url: URL is refused: 10.0.0.8 is a private address"),
    ],
)
async def test_webhook_targets_are_checked_at_enqueue(
    dispatcher: Dispatcher, url: str, expected: str
) -> None:
    with pytest.raises(jobstore.JobValidationError, match=expected):
        await dispatcher.enqueue("process-webhook", {**HOOK, "url": url})


async def test_the_hosts_policy_can_allow_private_targets_and_other_ports(
    store: jobstore.EventStore,
) -> None:
    policy = jobstore.AddressPolicy(allow_private=True, ports=frozenset({8080}))
    dispatcher = Dispatcher(store, None, policy)
    options = {
        "callback": "http://127.0.0.1:8080/done",
        "failure_callback": "http://10.0.0.1:8080/",
    }

    job_id = await dispatcher.enqueue(
        "process-webhook", {**HOOK, "url": "http://[::1]:8080/"}, None, options
    )

    [event] = await _events(store, job_id)
    assert event.options.callback == "http://127.0.0.1:8080/done"  # type: ignore[attr-defined]
    with pytest.raises(jobstore.JobValidationError, match="port 443 is not allowed"):
        await dispatcher.enqueue("process-webhook", HOOK)


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
async def test_over_deep_payload_or_metadata_is_refused_naming_the_limit(
    dispatcher: Dispatcher, store: jobstore.EventStore, depth: int
) -> None:
    with pytest.raises(jobstore.JobValidationError, match="more than 32 levels deep"):
        await dispatcher.enqueue("process-webhook", {**HOOK, "body": {"a": _nested(depth - 2)}})
    with pytest.raises(jobstore.JobValidationError, match="metadata nests"):
        await dispatcher.enqueue("process-webhook", HOOK, {"trace": _nested(depth - 1)})
    assert await store.last_position() == 0


async def test_payload_at_the_depth_limit_is_accepted(dispatcher: Dispatcher) -> None:
    assert await dispatcher.enqueue("process-webhook", {**HOOK, "body": {"a": _nested(30)}})


@pytest.mark.parametrize(
    ("payload_text", "metadata_text"),
    [
        ("x" * (500 * 1024), "y" * (600 * 1024)),  # small payload, the metadata makes it big
        # 360 KiB of UTF-8, published as 1080 KiB of \\u00e9 (in metadata: a personal field
        # travels sealed, as base64, which escapes nothing)
        ("", "é" * (180 * 1024)),
    ],
)
async def test_a_job_whose_qstash_message_would_pass_1_mib_is_refused(
    dispatcher: Dispatcher, store: jobstore.EventStore, payload_text: str, metadata_text: str
) -> None:
    payload = {**HOOK, "body": {"blob": payload_text}}
    metadata = {"note": metadata_text} if metadata_text else None

    with pytest.raises(jobstore.JobValidationError, match="at most 1048576 bytes") as caught:
        await dispatcher.enqueue("process-webhook", payload, metadata)
    assert "QStash message" in str(caught.value)
    assert await store.last_position() == 0
