"""Rotating the master data key against a real PostgreSQL: keys wrapped by a previous key
open, a rewrap moves every key to the current key (values open with it alone, the old
wrapped bytes gone from the table's pages), erasures before, during and after a rewrap win,
and a key wrapped by a master key not held is refused with nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

import jobstore
from jobstore import erasure, job_events, keyring, protect, rotation
from jobstore.settings import DEV_DATA_KEY

KEY_A = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
KEY_B = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
KEY_C = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="
A, B, C = (keyring.MasterKey(k).key_id for k in (KEY_A, KEY_B, KEY_C))
ADDRESS = "ada-rotation@example.com"
USER = 512
HOLD_ERASURE = """
CREATE FUNCTION public.hold_erasure() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7001);
    RETURN NEW;
END $$;
CREATE TRIGGER hold_erasure BEFORE INSERT ON jobtrail.events FOR EACH ROW
    WHEN (NEW.event_type = 'subject.erased') EXECUTE FUNCTION public.hold_erasure();
"""
HOLD_REWRAP = """
CREATE FUNCTION public.hold_rewrap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7002);
    RETURN NEW;
END $$;
CREATE TRIGGER hold_rewrap BEFORE UPDATE ON jobtrail.data_keys FOR EACH ROW
    WHEN (OLD.master_key_id IS DISTINCT FROM NEW.master_key_id)
    EXECUTE FUNCTION public.hold_rewrap();
"""

UseKeys = Callable[..., None]


@pytest.fixture
def use_keys(monkeypatch: pytest.MonkeyPatch) -> UseKeys:
    """Switch this process's master keys as a restart with new settings would."""
    monkeypatch.setattr(keyring, "_master", keyring.master_key())  # restored after the test

    def use(current: str, *previous: str) -> None:
        keyring.configure(
            jobstore.Settings(
                data_key=SecretStr(current),
                data_previous_keys=tuple(SecretStr(k) for k in previous),
            )
        )

    return use


@pytest.fixture
def dispatcher(store: jobstore.EventStore) -> jobstore.Dispatcher:
    return jobstore.Dispatcher(store)


async def _emails(dispatcher: jobstore.Dispatcher, count: int, user: int = USER) -> list[str]:
    return [
        await dispatcher.send_welcome_email_async(
            {"to": ADDRESS, "recipient_name": "Ada"}, {"user_id": user}
        )
        for _ in range(count)
    ]


async def _address(store: jobstore.EventStore, job_id: str) -> Any:
    """The job's recipient as a reader with this process's master keys opens it."""
    (first, *_) = await store.read_stream(f"job-{job_id}")
    assert isinstance(first.event, job_events.JobDispatched)
    assert ADDRESS not in str(first.event.payload)  # stored sealed
    return (await store.keys.reveal(first.event.payload))["to"]


async def _rows(pool: asyncpg.Pool) -> dict[str, tuple[str, bytes | None]]:
    rows = await pool.fetch(
        "SELECT job_id::text, master_key_id, wrapped_key FROM jobtrail.data_keys"
    )
    return {
        r["job_id"]: (
            r["master_key_id"],
            None if r["wrapped_key"] is None else bytes(r["wrapped_key"]),
        )
        for r in rows
    }


async def _tuples_holding(pool: asyncpg.Pool, data: list[bytes]) -> int:
    """How many row versions in the key table's pages, live or dead, hold any of ``data``."""
    await pool.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
    pages = await pool.fetchval(
        "SELECT pg_relation_size('jobtrail.data_keys') / current_setting('block_size')::int"
    )
    found = 0
    for page in range(pages):
        items = await pool.fetch(
            "SELECT t_data FROM heap_page_items(get_raw_page('jobtrail.data_keys', $1))"
            " WHERE t_data IS NOT NULL",
            page,
        )
        found += sum(any(d in bytes(i["t_data"]) for d in data) for i in items)
    return found


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def _waiting_on_a_row(pool: asyncpg.Pool) -> bool:
    """Whether a session of this database waits for a row another transaction holds."""
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')"
        )
    )


async def test_keys_of_a_previous_master_key_open_and_a_rewrap_moves_them_to_the_current_one(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher, use_keys: UseKeys
) -> None:
    await store.pool.execute("ALTER TABLE jobtrail.data_keys SET (autovacuum_enabled = off)")
    use_keys(KEY_A)
    old_jobs = await _emails(dispatcher, 5)
    schedule_id = await dispatcher.schedule(
        "send-email", "0 3 * * *", {"template": "welcome", "to": ADDRESS}, {"user_id": USER}
    )
    under_a = await _rows(store.pool)

    use_keys(KEY_B, KEY_A)
    (new_job,) = await _emails(dispatcher, 1)
    assert [await _address(store, j) for j in old_jobs] == [ADDRESS] * 5
    before = await rotation.status(store.pool)
    assert (before.by_master_key, before.to_rewrap) == ({A: 6, B: 1}, {A: 6})
    assert (before.current, before.previous, before.droppable) == (B, (A,), ())

    seen: list[tuple[int, int]] = []
    done = await rotation.rewrap(
        store.pool, batch_size=2, progress=lambda n, total: seen.append((n, total))
    )

    assert (done.master_key_id, done.count, done.by_master_key) == (B, 6, {A: 6})
    assert done.vacuumed
    assert seen == [(2, 6), (4, 6), (6, 6)]
    rows = await _rows(store.pool)
    assert {master for master, _ in rows.values()} == {B}
    assert all(rows[k][1] != wrapped for k, (_, wrapped) in under_a.items())
    old_bytes = [wrapped for _, wrapped in under_a.values() if wrapped is not None]
    assert len(old_bytes) == 6 and await _tuples_holding(store.pool, old_bytes) == 0
    after = await rotation.status(store.pool)
    assert (after.by_master_key, after.droppable) == ({B: 7}, (A,))

    use_keys(KEY_B)  # the previous key dropped
    assert [await _address(store, j) for j in [*old_jobs, new_job]] == [ADDRESS] * 6
    (listed,) = await jobstore.Dispatcher(store).schedules.list()
    assert listed.schedule_id == schedule_id
    (opened,) = await store.keys.reveal_all([listed])
    assert opened.payload["to"] == ADDRESS


async def test_a_second_rewrap_finds_nothing_to_do(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher, use_keys: UseKeys
) -> None:
    use_keys(KEY_A)
    await _emails(dispatcher, 2)
    use_keys(KEY_B, KEY_A)
    assert (await rotation.rewrap(store.pool)).count == 2
    rows = await _rows(store.pool)

    again = await rotation.rewrap(store.pool)

    assert (again.count, again.by_master_key) == (0, {})
    assert await _rows(store.pool) == rows


async def test_a_key_erased_before_the_rewrap_stays_erased(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher, use_keys: UseKeys
) -> None:
    use_keys(KEY_A)
    erased, *kept = await _emails(dispatcher, 3)
    await erasure.erase(store, "job", erased)
    use_keys(KEY_B, KEY_A)

    done = await rotation.rewrap(store.pool)

    assert done.count == 2
    rows = await _rows(store.pool)
    assert rows[erased] == (A, None) and all(rows[k][0] == B for k in kept)
    assert await store.keys.erased(erased)
    assert await _address(store, erased) == protect.ERASED
    found = await rotation.status(store.pool)
    assert (found.by_master_key, found.erased) == ({B: 2}, 1)


async def test_an_erasure_under_way_when_the_rewrap_reaches_its_key_wins(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher, use_keys: UseKeys
) -> None:
    """The erasure has destroyed the key but not committed yet: the rewrap never writes the
    key it read before back; it ends with the key erased and every other key rewrapped."""
    use_keys(KEY_A)
    jobs = await _emails(dispatcher, 2, user=USER) + await _emails(dispatcher, 3, user=USER + 1)
    use_keys(KEY_B, KEY_A)
    await store.pool.execute(HOLD_ERASURE)
    holder = await store.pool.acquire()
    try:
        await holder.execute("SELECT pg_advisory_lock(7001)")
        erasing = asyncio.create_task(erasure.erase(store, "user", USER))
        await _until(
            lambda: store.pool.fetchval(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            ),
            "the erasure waits inside its transaction",
        )
        rewrapping = asyncio.create_task(rotation.rewrap(store.pool, batch_size=2))
        await _until(
            lambda: _done_or_waiting(rewrapping, store.pool), "the rewrap waits or is done"
        )
        await holder.execute("SELECT pg_advisory_unlock(7001)")
        erased, done = await asyncio.gather(erasing, rewrapping)
    finally:
        await store.pool.release(holder)

    assert erased.job_ids == sorted(jobs[:2])
    assert done.count == 3
    rows = await _rows(store.pool)
    assert [rows[j] for j in jobs[:2]] == [(A, None)] * 2
    assert [rows[j][0] for j in jobs[2:]] == [B] * 3
    assert [await _address(store, j) for j in jobs] == [protect.ERASED] * 2 + [ADDRESS] * 3


async def _done_or_waiting(task: asyncio.Task[Any], pool: asyncpg.Pool) -> bool:
    return task.done() or await _waiting_on_a_row(pool)


async def test_an_erasure_reaching_keys_the_rewrap_holds_destroys_the_rewrapped_keys(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher, use_keys: UseKeys
) -> None:
    use_keys(KEY_A)
    jobs = await _emails(dispatcher, 2, user=USER) + await _emails(dispatcher, 2, user=USER + 1)
    use_keys(KEY_B, KEY_A)
    await store.pool.execute(HOLD_REWRAP)
    holder = await store.pool.acquire()
    try:
        await holder.execute("SELECT pg_advisory_lock(7002)")
        rewrapping = asyncio.create_task(rotation.rewrap(store.pool))
        await _until(
            lambda: store.pool.fetchval(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            ),
            "the rewrap holds its batch",
        )
        erasing = asyncio.create_task(erasure.erase(store, "user", USER))
        await _until(lambda: _waiting_on_a_row(store.pool), "the erasure waits for the rewrap")
        await holder.execute("SELECT pg_advisory_unlock(7002)")
        done, erased = await asyncio.gather(rewrapping, erasing)
    finally:
        await store.pool.release(holder)

    assert done.count == 4 and erased.job_ids == sorted(jobs[:2])
    rows = await _rows(store.pool)
    assert [rows[j] for j in jobs[:2]] == [(B, None)] * 2
    assert [await _address(store, j) for j in jobs] == [protect.ERASED] * 2 + [ADDRESS] * 2


async def test_a_key_wrapped_by_a_master_key_not_held_is_refused_and_nothing_changes(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher, use_keys: UseKeys
) -> None:
    use_keys(KEY_A)
    await _emails(dispatcher, 2)
    use_keys(KEY_C)
    (stranger,) = await _emails(dispatcher, 1)
    use_keys(KEY_B, KEY_A)
    rows = await _rows(store.pool)

    with pytest.raises(keyring.DataKeyError) as refused:
        await rotation.rewrap(store.pool)
    with pytest.raises(keyring.DataKeyError) as unreadable:
        await _address(store, stranger)

    assert str(refused.value) == (
        f"master key {C} wrapped 1 data key(s), and this process does not hold it (it holds "
        f"{B} (JOBTRAIL_DATA_KEY), {A} (JOBTRAIL_DATA_PREVIOUS_KEYS)): set JOBTRAIL_DATA_KEY "
        "to the key the data keys were made with, or list that key in "
        "JOBTRAIL_DATA_PREVIOUS_KEYS; nothing was rewrapped"
    )
    assert f"master key {C} wrapped the data key of job {stranger}" in str(unreadable.value)
    assert "JOBTRAIL_DATA_PREVIOUS_KEYS" in str(unreadable.value)
    assert await _rows(store.pool) == rows


async def test_a_rewrap_under_the_public_development_key_is_refused(
    store: jobstore.EventStore, dispatcher: jobstore.Dispatcher, use_keys: UseKeys
) -> None:
    """A production key listed as previous, JOBTRAIL_DATA_KEY left at its default: rewrapping
    would wrap real data keys with a key anyone can read."""
    use_keys(KEY_A)
    (job,) = await _emails(dispatcher, 1)
    use_keys(DEV_DATA_KEY, KEY_A)
    rows = await _rows(store.pool)

    with pytest.raises(keyring.DataKeyError) as refused:
        await rotation.rewrap(store.pool)

    assert str(refused.value).startswith(
        "JOBTRAIL_DATA_KEY is the public development key: rewrapping would put 1 data key(s)"
    )
    assert await _rows(store.pool) == rows
    assert await _address(store, job) == ADDRESS, "still open with the previous key"


def test_new_data_keys_are_wrapped_by_the_current_key_only() -> None:
    rotated = keyring.MasterKey(KEY_B, [KEY_A])
    wrapped = rotated.wrap(b"k" * 32, "a-job")

    assert (rotated.key_id, rotated.previous_ids) == (B, (A,))
    assert rotated.holds(A) and rotated.holds(B) and not rotated.holds(C)
    assert keyring.MasterKey(KEY_B).unwrap(wrapped, "a-job", B) is not None
    with pytest.raises(keyring.DataKeyError, match="damaged"):
        keyring.MasterKey(KEY_A).unwrap(wrapped, "a-job", A)  # not A's doing
