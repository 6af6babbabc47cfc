"""Appends that do not serialise (sql/0019), and what still must hold without the old lock.

Readers wait behind a transaction still open and catch up when it ends; same-stream
appends still conflict cleanly; a delivery token still starts one attempt; archiving still
keeps appends out of the streams it moves.  Two stores on two pools stand for two hosts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

import jobstore
import projections
from jobstore import audit, job_events
from jobstore.dispatcher import Dispatcher
from tests.events import Noted
from tests.pg import until_readable

TOKEN_EXPIRY = datetime.now(UTC) + timedelta(minutes=5)


@pytest.fixture
async def other_host(db_dsn: str) -> AsyncIterator[jobstore.EventStore]:
    """A second event store with a pool of its own: appends never share its transactions."""
    pool = await jobstore.create_pool(db_dsn, min_size=1, max_size=10)
    try:
        yield jobstore.EventStore(pool)
    finally:
        await pool.close()


async def test_a_reader_waits_behind_a_long_open_transaction_and_catches_up_when_it_ends(
    store: jobstore.EventStore, db_dsn: str, open_transaction: asyncpg.Connection
) -> None:
    """Events committed after an older transaction began stay unread until it ends."""
    positions = await store.append("late-1", [Noted(n=1), Noted(n=2)])

    page = await store.read_after(jobstore.START)
    assert (list(page.events), page.held_back) == ([], True)
    lag = await store.reader_lag()
    assert lag.held_back_events == 2 and lag.held_back_seconds >= 0

    # idle_poll far beyond the test: only the held-back retry can deliver the events.
    async with jobstore.Subscription(store, db_dsn, idle_poll=60) as subscription:
        received: list[int] = []

        async def consume() -> None:
            async for recorded in subscription:
                received.append(recorded.position)
                if len(received) == 2:
                    return

        consuming = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        assert received == [], "a reader read past a transaction still running"
        await open_transaction.execute("COMMIT")  # ends without a notification
        await asyncio.wait_for(consuming, 10)
    assert received == positions
    await until_readable(store)
    assert (await store.reader_lag()).held_back_events == 0


async def test_a_follower_held_back_catches_up_without_a_notification(
    store: jobstore.EventStore, db_dsn: str, open_transaction: asyncpg.Connection
) -> None:
    seen: list[int] = []

    class Recorder:
        async def handle(self, batch: object, commit: jobstore.follower.Commit) -> None:
            assert isinstance(batch, list)
            seen.extend(e.position for e in batch)

    positions = await store.append("late-2", [Noted(n=1)])
    follower = jobstore.Follower(store, "late", Recorder(), dsn=db_dsn, elected=False)
    catching_up = asyncio.create_task(follower.run_until_caught_up())
    await asyncio.sleep(0.3)
    assert not catching_up.done() and seen == []
    await open_transaction.execute("COMMIT")
    assert await asyncio.wait_for(catching_up, 10) == 1
    assert seen == positions
    assert (await jobstore.checkpoint.read(store.pool, "late")).position == positions[0]


async def test_same_stream_appends_from_two_hosts_conflict_and_never_share_a_version(
    store: jobstore.EventStore, other_host: jobstore.EventStore
) -> None:
    for round_ in range(10):
        stream = f"race-{round_}"
        await store.append(stream, [Noted()], jobstore.NO_STREAM)
        results = await asyncio.gather(
            *(s.append(stream, [Noted(n=i)], 1) for i, s in enumerate([store, other_host] * 3)),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, list)]
        losses = [r for r in results if isinstance(r, jobstore.ConcurrencyError)]
        assert (len(wins), len(losses)) == (1, 5), results
        assert [e.version for e in await store.read_stream(stream)] == [1, 2]


async def test_appends_at_any_version_from_two_hosts_queue_instead_of_failing(
    store: jobstore.EventStore, other_host: jobstore.EventStore
) -> None:
    """The stream's lock orders them: every append lands, versions 1..n without a gap."""
    results = await asyncio.gather(
        *(
            s.append("busy", [Noted(n=i), Noted(n=i)])
            for i, s in enumerate([store, other_host] * 10)
        )
    )
    assert all(len(r) == 2 for r in results)
    assert [e.version for e in await store.read_stream("busy")] == list(range(1, 41))


async def test_a_delivery_token_starts_one_append_even_from_two_hosts_at_once(
    store: jobstore.EventStore, other_host: jobstore.EventStore, db_dsn: str
) -> None:
    """The second use waits for the first one's transaction, then is refused."""
    first = await asyncpg.connect(db_dsn)
    try:
        async with first.transaction():
            await first.fetch(
                "SELECT * FROM jobtrail.append_events_each($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                ["job-a"], [None], ["jti-1"], [TOKEN_EXPIRY],
                ["job-a"], ["test.noted"], [1], ['{"n": 0}'], ["{}"],
            )  # fmt: skip
            token = jobstore.DeliveryToken("jti-1", TOKEN_EXPIRY)
            second = asyncio.create_task(other_host.append("job-b", [Noted()], token=token))
            await asyncio.sleep(0.3)
            assert not second.done(), "the token's second use did not wait for the first"
        with pytest.raises(jobstore.TokenUsedError):
            await second
    finally:
        await first.close()
    assert await store.read_stream("job-b") == []

    token = jobstore.DeliveryToken("jti-2", TOKEN_EXPIRY)
    results = await asyncio.gather(
        *(
            s.append(f"job-{i}", [Noted()], token=token)
            for i, s in enumerate([store, other_host] * 4)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, list) for r in results) == 1, results
    assert sum(isinstance(r, jobstore.TokenUsedError) for r in results) == 7, results


async def completed_job(store: jobstore.EventStore) -> tuple[str, int]:
    """A finished job's stream and version (what archiving moves)."""
    dispatcher = Dispatcher(store)
    welcome = {"template": "welcome", "to": "ada@example.com", "data": {"recipient_name": "A"}}
    job_id = await dispatcher.enqueue("send-email", welcome)
    await dispatcher.update_job_execution(job_id, {"status": "processing"})
    await dispatcher.update_job_execution(job_id, {"status": "completed"})
    stream = f"job-{job_id}"
    return stream, await store.stream_version(stream)


def late_append(store: jobstore.EventStore, path: str, stream: str, version: int) -> Any:
    """An append to ``stream`` through one of the store's two write paths: a single append
    (group-committed, each stream checked alone) or a batch (all or nothing)."""
    if path == "single":
        return store.append(stream, [Noted()], version)
    return store.append_streams([jobstore.StreamAppend(stream, [Noted()], version)])


@pytest.mark.parametrize("path", ["single", "batch"])
async def test_archiving_keeps_appends_out_of_the_streams_it_moves(
    store: jobstore.EventStore, other_host: jobstore.EventStore, db_dsn: str, path: str
) -> None:
    """An append racing the move waits for it, then is a conflict: its event is neither
    lost silently nor written into the log as a fragment of the moved stream (an archived
    stream keeps its place: its versions count, and nothing more joins it)."""
    stream, version = await completed_job(store)
    assert await audit.chain_through(store.pool), "only chained streams are archived"
    archiver = await asyncpg.connect(db_dsn)
    try:
        async with archiver.transaction():
            moved = await archiver.fetch(
                "SELECT * FROM jobtrail.archive_streams($1, $2, 30)",
                [stream],
                datetime.now(UTC) + timedelta(days=1),
            )
            assert [r[0] for r in moved] == [stream]
            late = asyncio.create_task(late_append(other_host, path, stream, version))
            await asyncio.sleep(0.3)
            assert not late.done(), "an append joined a stream while it was being moved"
        with pytest.raises(jobstore.ConcurrencyError) as refused:
            await late
    finally:
        await archiver.close()
    assert refused.value.actual == version  # the archived stream keeps its place
    assert await store.read_stream(stream) == []
    assert len(await store.read_archived_stream(stream)) == version


@pytest.mark.parametrize("expected", [None, "archived version"])
async def test_an_archived_stream_takes_no_more_events_and_the_views_go_on(
    store: jobstore.EventStore, db_dsn: str, expected: str | None
) -> None:
    """Whatever version an append expects, an archived stream refuses it: a fragment in the
    log would stop every view ("starts with job.notified, not job.dispatched")."""
    stream, version = await completed_job(store)
    assert await audit.chain_through(store.pool), "only chained streams are archived"
    await store.pool.fetch(
        "SELECT * FROM jobtrail.archive_streams($1, $2, 30)",
        [stream],
        datetime.now(UTC) + timedelta(days=1),
    )
    notified = job_events.JobNotified(
        dispatch=1,
        kind="completed",
        notification_id="n-1",
        url="https://example.com/hook",
        result="delivered",
        status=200,
    )
    expected_version = jobstore.ANY if expected is None else version
    for append in (
        lambda: store.append(stream, [notified], expected_version),
        lambda: store.append_streams([jobstore.StreamAppend(stream, [notified], expected_version)]),
    ):
        with pytest.raises(jobstore.ConcurrencyError):
            await append()
    assert await store.read_stream(stream) == []
    await projections.ProjectionRunner(store.pool, db_dsn).run_until_caught_up()
    assert await projections.get_job_execution(store.pool, stream.removeprefix("job-")) is None


async def test_an_append_in_an_older_transaction_after_a_younger_one_is_a_conflict(
    store: jobstore.EventStore, other_host: jobstore.EventStore
) -> None:
    """Reading order within a stream stays version order (an older id must not come last)."""
    await store.append("shared", [Noted(n=1)], jobstore.NO_STREAM)
    async with store.pool.acquire() as conn, conn.transaction():
        await store.append("elsewhere", [Noted()], connection=conn)  # takes its id now
        await other_host.append("shared", [Noted(n=2)], 1)  # a younger id, committed
        with pytest.raises(jobstore.ConcurrencyError, match="shared"):
            await store.append("shared", [Noted(n=3)], connection=conn)
    await until_readable(store)
    page = await store.read_after(jobstore.START)
    shared = [e.version for e in page.events if e.stream_id == "shared"]
    assert shared == [1, 2]
