"""``jobtrail enqueue`` and ``jobtrail schedule`` in a subprocess, against a real database."""

from __future__ import annotations

import asyncio
import json

import asyncpg

import jobstore
from tests.cli_support import jobtrail, one_line_error

EMAIL = '{"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "Ada"}}'


async def test_enqueue_records_the_job_with_its_options_and_metadata(
    db_dsn: str, pool: asyncpg.Pool
) -> None:
    human = await jobtrail(
        db_dsn,
        *("enqueue", "send-email", "--payload", EMAIL, "--delay", "60", "--retries", "1"),
        *("--user-id", "7", "--organization-id", "3"),
    )
    assert human.code == 0, human.err
    assert human.err == ""
    job_id = human.out.split("job ")[1].split()[0]
    assert "log position 1" in human.out

    state = await jobstore.Dispatcher(jobstore.EventStore(pool)).load(job_id)
    assert state is not None
    assert state.job_type == "send-email"
    assert state.options.retries == 1
    assert state.options.not_before is not None
    assert (state.metadata["user_id"], state.metadata["organization_id"]) == (7, 3)

    args = ("enqueue", "cleanup-old-data", "--payload", '{"retention": 30}', "--json")
    first = await jobtrail(db_dsn, *args, "--idempotency-key", "nightly")
    again = await jobtrail(db_dsn, *args, "--idempotency-key", "nightly")
    created, repeated = json.loads(first.out), json.loads(again.out)
    assert created["created"] is True and isinstance(created["position"], int)
    assert repeated == {"job_id": created["job_id"], "position": None, "created": False}


async def test_bad_input_is_named_in_one_line_and_exits_2(
    db_dsn: str, store: jobstore.EventStore
) -> None:
    bad_json, not_object, unknown, invalid, bad_retries = await asyncio.gather(
        jobtrail(db_dsn, "enqueue", "send-email", "--payload", '{"to": '),
        jobtrail(db_dsn, "enqueue", "send-email", "--payload", "[1, 2]"),
        jobtrail(db_dsn, "enqueue", "send-mail", "--payload", EMAIL),
        jobtrail(db_dsn, "enqueue", "send-email", "--payload", '{"to": 3}'),
        jobtrail(
            db_dsn, "enqueue", "cleanup-old-data", "--payload", '{"retention": 1}', "--retries=500"
        ),
    )
    one_line_error(bad_json, 2, "--payload is not valid JSON", "line 1 column")
    one_line_error(not_object, 2, "--payload must be a JSON object", "not a JSON array")
    one_line_error(
        unknown, 2, "unknown job type 'send-mail'", "known types: cleanup-old-data", "send-email"
    )

    assert invalid.code == 2 and "Traceback" not in invalid.err
    assert invalid.err.splitlines() == [
        "error: invalid payload",
        "  payload.template: Field required",
        "  payload.to: Input should be a valid string",
    ]
    assert bad_retries.code == 2
    assert bad_retries.err.splitlines()[1].startswith("  options.retries: ")
    assert await store.last_position() == 0, "nothing was written"


async def test_schedule_create_list_pause_resume_delete(db_dsn: str) -> None:
    payload = '{"retention": 30}'
    created, bad_cron, unknown_type = await asyncio.gather(
        jobtrail(
            db_dsn,
            *("schedule", "create", "cleanup-old-data", "--cron", "0 3 * * *"),
            *("--payload", payload, "--json"),
        ),
        jobtrail(db_dsn, "schedule", "create", "cleanup-old-data", "--cron", "0 3 * *"),
        jobtrail(db_dsn, "schedule", "create", "nope", "--cron", "0 3 * * *"),
    )
    assert created.code == 0, created.err
    schedule_id = json.loads(created.out)["schedule_id"]
    assert bad_cron.code == 2
    assert bad_cron.err.splitlines() == [
        "error: invalid cron",
        "  cron: '0 3 * *' has 4 fields; expected 5 (minute hour day month weekday)",
    ]
    one_line_error(unknown_type, 2, "unknown job type 'nope'")

    listed = json.loads((await jobtrail(db_dsn, "schedule", "list", "--json")).out)["schedules"]
    assert [(s["schedule_id"], s["job_type"], s["cron"], s["paused"]) for s in listed] == [
        (schedule_id, "cleanup-old-data", "0 3 * * *", False)
    ]

    paused = await jobtrail(db_dsn, "schedule", "pause", schedule_id)
    assert paused.code == 0 and f"schedule {schedule_id} paused" in paused.out
    table = (await jobtrail(db_dsn, "schedule", "list")).out
    row = next(line for line in table.splitlines() if schedule_id in line)
    assert "cleanup-old-data" in row and "0 3 * * *" in row and "yes" in row

    assert (await jobtrail(db_dsn, "schedule", "resume", schedule_id)).code == 0
    assert (await jobtrail(db_dsn, "schedule", "delete", schedule_id)).code == 0
    after, deleted_again = await asyncio.gather(
        jobtrail(db_dsn, "schedule", "list", "--json"),
        jobtrail(db_dsn, "schedule", "delete", schedule_id),
    )
    assert json.loads(after.out) == {"schedules": []}
    one_line_error(deleted_again, 1, f"no schedule with id {schedule_id!r}")


async def test_enqueue_takes_the_controls_from_the_command_line(
    db_dsn: str, store: jobstore.EventStore
) -> None:
    result = await jobtrail(
        db_dsn,
        "enqueue",
        "cleanup-old-data",
        "--payload",
        '{"retention": 3}',
        "--retry-delay",
        "5s",
        "--backoff",
        "exponential",
        "--parallelism",
        "2",
        "--rate",
        "10",
        "--period",
        "1m",
        "--timeout",
        "30",
        "--json",
    )

    assert result.code == 0, result
    job_id = json.loads(result.out)["job_id"]
    (recorded,) = await store.read_stream(f"job-{job_id}")
    options = recorded.event.options  # type: ignore[attr-defined]
    assert (options.backoff.kind, options.backoff.base) == ("exponential", 5.0)
    assert (options.flow_control.parallelism, options.flow_control.rate) == (2, 10)
    assert (options.flow_control.period, options.timeout) == (60, 30.0)
