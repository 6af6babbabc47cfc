"""``jobtrail keys status|rewrap`` in a subprocess, against a real database: a rotation of
the master data key from start to end, a key not held, bad settings, serve's refusal."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from jobstore import keyring
from jobstore.settings import DEV_DATA_KEY
from tests.acceptance.test_serve_safety import REAL_LOOKING, production_env, refused, run
from tests.cli_support import Result, jobtrail, one_line_error
from tests.host_support import free_port

KEY_A = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
KEY_B = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
KEY_C = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
A, B, C = (keyring.MasterKey(k).key_id for k in (KEY_A, KEY_B, KEY_C))
ADDRESS = "ada-keys-cli@example.com"
EMAIL = json.dumps({"template": "welcome", "to": ADDRESS, "data": {"recipient_name": "Ada"}})


def keys(monkeypatch: pytest.MonkeyPatch, current: str, previous: str | None = None) -> None:
    """The master keys the next commands run with."""
    monkeypatch.setenv("JOBTRAIL_DATA_KEY", current)
    if previous is None:
        monkeypatch.delenv("JOBTRAIL_DATA_PREVIOUS_KEYS", raising=False)
    else:
        monkeypatch.setenv("JOBTRAIL_DATA_PREVIOUS_KEYS", previous)


async def enqueue(db_dsn: str, count: int) -> list[str]:
    """``count`` emails enqueued through the CLI, each with a data key."""
    runs = await asyncio.gather(
        *(
            jobtrail(
                db_dsn, "enqueue", "send-email", "--payload", EMAIL, "--user-id", "5", "--json"
            )
            for _ in range(count)
        )
    )
    assert all(r.code == 0 for r in runs), runs
    return [json.loads(r.out)["job_id"] for r in runs]


async def key_rows(pool: asyncpg.Pool) -> dict[str, tuple[str, bytes | None]]:
    rows = await pool.fetch(
        "SELECT job_id::text, master_key_id, wrapped_key FROM jobtrail.data_keys"
    )
    return {r["job_id"]: (r["master_key_id"], r["wrapped_key"]) for r in rows}


def ok(result: Result) -> Result:
    assert result.code == 0 and "Traceback" not in result.err, result
    return result


async def test_a_rotation_from_start_to_end(
    db_dsn: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys(monkeypatch, KEY_A)
    erased, *jobs = await enqueue(db_dsn, 4)
    ok(await jobtrail(db_dsn, "erase", "--job-id", erased))
    keys(monkeypatch, KEY_B, f" {KEY_A} ,")

    status = ok(await jobtrail(db_dsn, "keys", "status")).out
    assert [line.split() for line in status.splitlines() if A in line or B in line] == [
        ["│", B, "│", "0", "│", "current", "│"],
        ["│", A, "│", "3", "│", "previous", "│"],
    ]
    assert "│ (erased)" in status and "3 data key(s) not wrapped by the current key" in status

    before = await key_rows(pool)
    dry = ok(await jobtrail(db_dsn, "keys", "rewrap", "--dry-run"))
    assert dry.out == (
        f"would rewrap 3 data key(s) with master key {B} (wrapped now: 3 by {A} (previous)); "
        "nothing changed\n"
    )
    assert await key_rows(pool) == before

    done = ok(await jobtrail(db_dsn, "keys", "rewrap", "--batch-size", "2"))
    assert done.out == f"rewrapped 3 data key(s) with master key {B} (wrapped before: 3 by {A})\n"
    assert "rewrapped 3 of 3 data keys" in done.err, "progress, off a terminal"
    rows = await key_rows(pool)
    assert rows[erased] == (A, None) and {rows[j][0] for j in jobs} == {B}

    after = json.loads(ok(await jobtrail(db_dsn, "keys", "status", "--json")).out)
    assert after == {
        "current": B,
        "previous": [A],
        "by_master_key": [{"master_key_id": B, "keys": 3, "held": "current"}],
        "erased": 1,
        "to_rewrap": 0,
        "droppable": [A],
    }
    again = json.loads(ok(await jobtrail(db_dsn, "keys", "rewrap", "--json")).out)
    assert again == {"master_key_id": B, "rewrapped": 0, "by_master_key": {}, "vacuumed": True}

    keys(monkeypatch, KEY_B)  # the previous key dropped
    shown = json.loads(ok(await jobtrail(db_dsn, "jobs", "show", jobs[0], "--json")).out)
    assert ADDRESS in json.dumps(shown)
    assert ADDRESS not in json.dumps(
        json.loads(ok(await jobtrail(db_dsn, "jobs", "show", erased, "--json")).out)
    )


async def test_a_key_of_a_master_key_not_held_is_named_in_one_line_and_nothing_changes(
    db_dsn: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys(monkeypatch, KEY_C)
    await enqueue(db_dsn, 1)
    keys(monkeypatch, KEY_A)
    await enqueue(db_dsn, 2)
    keys(monkeypatch, KEY_B, KEY_A)
    before = await key_rows(pool)

    refused_run = await jobtrail(db_dsn, "keys", "rewrap")
    dry = await jobtrail(db_dsn, "keys", "rewrap", "--dry-run")

    one_line_error(
        refused_run, 1, f"master key {C} wrapped 1 data key(s)", B, A, "nothing was rewrapped"
    )
    one_line_error(dry, 1, f"master key {C} wrapped 1 data key(s)")
    assert f"1 by {C} (not held)" in dry.out and f"2 by {A} (previous)" in dry.out
    assert await key_rows(pool) == before
    status = ok(await jobtrail(db_dsn, "keys", "status")).out
    assert [line.split()[1:6] for line in status.splitlines() if C in line] == [
        [C, "│", "1", "│", "not"]
    ]


@pytest.mark.parametrize(
    ("current", "previous", "problem"),
    [
        (KEY_B, f"{KEY_A},not-a-key-of-ours", "key 2 is not 32 random bytes in base64"),
        (KEY_B, f"{KEY_A}=", "key 1 is not 32 random bytes in base64"),
        (KEY_B, f"{KEY_A}, {KEY_B}", "key 2 is JOBTRAIL_DATA_KEY itself"),
        (KEY_B, f"{KEY_A},{KEY_C}, {KEY_A}", "key 3 is key 1 again"),
    ],
)
async def test_bad_previous_data_keys_are_refused_by_their_place(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch, current: str, previous: str, problem: str
) -> None:
    keys(monkeypatch, current, previous)

    result = await jobtrail(db_dsn, "keys", "rewrap")

    assert result.code == 1 and "Traceback" not in result.err, result
    assert "invalid configuration" in result.err and "JOBTRAIL_DATA_PREVIOUS_KEYS" in result.err
    assert problem in result.err
    assert "not-a-key-of-ours" not in result.err and KEY_A not in result.err


def test_serve_refuses_the_public_data_key_among_the_previous_keys_off_loopback() -> None:
    values = production_env(
        QSTASH_URL="https://qstash.example.com",
        JOBTRAIL_WEBHOOK_SECRET="a-long-random-webhook-secret-of-ours",
        JOBTRAIL_AUDIT_KEY="a-long-random-audit-key-of-ours",
        JOBTRAIL_DATA_KEY=KEY_B,
        JOBTRAIL_DATA_PREVIOUS_KEYS=f"{KEY_A},{DEV_DATA_KEY}",
        **REAL_LOOKING,
    )

    result = run(["serve", "--port", str(free_port()), "--no-qstash", "--host", "0.0.0.0"], values)

    line = refused(result, "JOBTRAIL_DATA_PREVIOUS_KEYS", "jobtrail keys rewrap")
    assert DEV_DATA_KEY not in line
