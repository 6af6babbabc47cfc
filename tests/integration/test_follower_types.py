"""Followers of some event types: they get exactly those, and their cursor passes the rest.

A handler declares the types it acts on (``handles``); its follower reads pages of every
event, but only events of those types are sent and decoded, and the checkpoint still moves
past the others: nothing skipped, nothing read twice, held-back transactions waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from qstash import AsyncQStash

import jobstore
from jobstore import event as event_module
from jobstore import query
from jobstore.notifier import Notifier, NotifierConfig
from jobstore.relay import Relay, RelayConfig
from tests.events import Noted
from tests.pg import until_readable

NOTED = frozenset({Noted.type_name})


class Aside(jobstore.Event, type_name="test.aside"):
    """An event of a type the followers under test do not handle."""

    n: int = 0


class NotedOnly:
    """A handler of ``test.noted`` events: records every batch it is handed."""

    handles = NOTED

    def __init__(self) -> None:
        self.batches: list[list[jobstore.RecordedEvent]] = []

    async def handle(
        self, batch: Sequence[jobstore.RecordedEvent], commit: jobstore.follower.Commit
    ) -> None:
        self.batches.append(list(batch))

    @property
    def seen(self) -> list[jobstore.RecordedEvent]:
        return [r for b in self.batches for r in b]


def follower_of(store: jobstore.EventStore, dsn: str, handler: Any) -> jobstore.Follower:
    config = jobstore.FollowerConfig(batch_size=3, idle_poll=0.1, leader_retry=0.05)
    return jobstore.Follower(store, "noted", handler, dsn=dsn, config=config, elected=False)


async def whole_log(store: jobstore.EventStore) -> list[jobstore.RecordedEvent]:
    """Every event, in the followers' reading order (an unfiltered follower's view)."""
    events: list[jobstore.RecordedEvent] = []
    cursor = jobstore.START
    while page := (await store.read_after(cursor, 1000)).events:
        events += page
        cursor = jobstore.Cursor.of(page[-1])
    return events


def mixed(n: int, pattern: str) -> list[jobstore.Event]:
    """Events by ``pattern``: ``N`` a Noted, ``a`` an Aside."""
    return [Noted(n=n * 100 + i) if c == "N" else Aside(n=i) for i, c in enumerate(pattern)]


async def test_a_follower_of_some_types_gets_exactly_those_in_order_and_ends_at_the_head(
    store: jobstore.EventStore, db_dsn: str, open_transaction: asyncpg.Connection
) -> None:
    """Pages of other types only, pages mixing both, and a transaction that commits last
    with the lowest id: the follower is handed every Noted once, in reading order, and
    nothing else; its checkpoint ends at the log's head, so a restart reads nothing again."""
    await store.append("s-1", mixed(1, "NaaaaN"))
    # Written before, committed after the appends below: the followers' order puts it first.
    await store.append("s-late", mixed(2, "aNaaaaaN"), connection=open_transaction)
    await store.append("s-2", mixed(3, "aaaaaaaNaN"))
    await store.append("s-3", mixed(4, "aaaaaaa"))  # the head: of another type

    handler = NotedOnly()
    catching_up = asyncio.create_task(follower_of(store, db_dsn, handler).run_until_caught_up())
    await asyncio.sleep(0.3)
    assert not catching_up.done(), "the follower read past a transaction still running"
    await open_transaction.execute("COMMIT")
    handled = await asyncio.wait_for(catching_up, 20)

    expected = [r for r in await whole_log(store) if r.type_name in NOTED]
    assert [r.position for r in handler.seen] == [r.position for r in expected]
    assert len(expected) == handled == 6
    assert all(isinstance(r.event, Noted) for r in handler.seen)
    assert all(handler.batches), "a handler was handed an empty batch"
    head = await store.head()
    assert await jobstore.checkpoint.read(store.pool, "noted") == head

    again = NotedOnly()
    assert await follower_of(store, db_dsn, again).run_until_caught_up() == 0
    assert again.batches == []


async def test_a_page_of_some_types_covers_every_event_and_sends_only_theirs(
    store: jobstore.EventStore, pool: asyncpg.Pool
) -> None:
    await store.append("s-1", mixed(1, "aNaaNaa"))
    await until_readable(store)
    everything = await store.read_after(jobstore.START, 6)
    page = await store.read_after(jobstore.START, 6, NOTED)

    assert [r.position for r in page.events] == [
        r.position for r in everything.events if r.type_name in NOTED
    ]
    assert (page.size, page.last(jobstore.START)) == (6, jobstore.Cursor.of(everything.events[-1]))
    assert page.held_back == everything.held_back
    rest = await store.read_after(page.last(jobstore.START), 6, NOTED)
    assert (rest.events, rest.size) == ([], 1)

    statement = query.load("jobstore", "store.sql")["read_after"]
    rows = await pool.fetch(statement, 0, 0, 10, sorted(NOTED))
    assert {r["event_type"]: r["data"] for r in rows if not r["handled"]} == {None: None}


async def test_an_event_a_follower_does_not_handle_is_never_decoded(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """An event this program cannot decode (a type from a newer version) stops only the
    followers that handle its type."""
    await store.append("s-1", [Noted(n=1)])
    await pool.execute(
        "SELECT jobtrail.append_events(ARRAY['s-2'], ARRAY[NULL::integer], ARRAY['s-2'],"
        " ARRAY['test.from_the_future'], ARRAY[1::smallint], ARRAY['{}'::json],"
        " ARRAY['{}'::json], true)"
    )
    await store.append("s-1", [Noted(n=2)])

    await until_readable(store)
    with pytest.raises(jobstore.EventStoreError):
        await store.read_after(jobstore.START)
    handler = NotedOnly()
    assert await follower_of(store, db_dsn, handler).run_until_caught_up() == 2
    assert [r.event for r in handler.seen] == [Noted(n=1), Noted(n=2)]


# The declared types: a handler must not act on a type it did not declare, since its
# follower would never hand it one.  Acting on an event means reading anything of it but
# its type: a probe event raises Touched at the first such read.


class Touched(BaseException):
    """The handler read an event's data (a BaseException: no handler's ``except`` eats it)."""


class _ProbeRecord(jobstore.RecordedEvent):
    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if name not in ("event", "type_name") and not name.startswith("__"):
            raise Touched(name)
        return object.__getattribute__(self, name)


def probe(type_name: str) -> jobstore.RecordedEvent:
    """An event of ``type_name`` that raises Touched when anything but its type is read."""
    cls = event_module.event_class(type_name)
    fields = set(cls.model_fields)

    def __getattribute__(self: Any, name: str) -> Any:
        if name in fields:
            raise Touched(f"{type_name}.{name}")
        return super(spy, self).__getattribute__(name)

    spy: Any = type(f"Probe{cls.__name__}", (cls,), {"__getattribute__": __getattribute__})
    event = spy.model_construct()
    return _ProbeRecord(1, "job-probe", 1, event, {}, datetime.now(UTC))


async def acted_on(handler: Any) -> set[str]:
    """The event types ``handler`` reads more of than their type, fed one by one."""

    @contextlib.asynccontextmanager
    async def commit() -> AsyncIterator[Any]:
        yield None

    touched = set()
    for type_name in event_module.known_types():
        try:
            await handler.handle([probe(type_name)], commit)
        except Touched:
            touched.add(type_name)
    return touched


@pytest.fixture
async def qstash() -> AsyncIterator[AsyncQStash]:
    client = AsyncQStash("unused", base_url="http://127.0.0.1:9", retry=False)
    yield client
    await client.http._client.aclose()


async def test_the_relay_acts_on_exactly_the_types_it_declares(
    store: jobstore.EventStore, db_dsn: str, qstash: AsyncQStash
) -> None:
    relay = Relay(store, db_dsn, qstash, RelayConfig(public_url="http://127.0.0.1:9"))
    assert relay.follower.handles == relay.handles
    assert await acted_on(relay) == relay.handles


async def test_the_notifier_acts_on_exactly_the_types_it_declares(
    store: jobstore.EventStore, db_dsn: str, qstash: AsyncQStash
) -> None:
    notifier = Notifier(store, db_dsn, qstash, NotifierConfig(public_url="http://127.0.0.1:9"))
    assert notifier.follower.handles == notifier.handles
    assert await acted_on(notifier) == notifier.handles
