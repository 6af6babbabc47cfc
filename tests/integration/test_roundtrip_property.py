"""Property: any sequence of appends reads back identically, per stream and globally."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobstore
from tests import pg
from tests.events import Noted

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=8),
            children,
            max_size=3,
        )
    ),
    max_leaves=10,
)
events = st.builds(
    Noted,
    n=st.integers(min_value=-(2**31), max_value=2**31),
    text=st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=30),
    extra=st.dictionaries(
        st.text(max_size=5).filter(lambda s: "\x00" not in s), json_values, max_size=3
    ),
)
appends = st.lists(
    st.tuples(st.integers(min_value=0, max_value=4), st.lists(events, min_size=1, max_size=4)),
    min_size=1,
    max_size=8,
)


async def _check(dsn: str, batch: list[tuple[int, list[Noted]]]) -> None:
    prefix = uuid.uuid4().hex[:8]
    pool = await jobstore.create_pool(dsn, min_size=1, max_size=2)
    try:
        store = jobstore.EventStore(pool)
        start = await store.last_position()
        expected: dict[str, list[Noted]] = {}
        order: list[tuple[str, Noted]] = []
        for stream_no, evs in batch:
            stream = f"{prefix}-{stream_no}"
            await store.append(stream, evs, len(expected.get(stream, [])) or "no_stream")
            expected.setdefault(stream, []).extend(evs)
            order.extend((stream, e) for e in evs)
        for stream, evs in expected.items():
            assert [r.event for r in await store.read_stream(stream)] == evs
        globally = await store.read_all(start, 10_000)
        assert [(r.stream_id, r.event) for r in globally] == order
    finally:
        await pool.close()


@pytest.fixture
def property_db(server_dsn: str, template_db: str) -> Iterator[str]:
    """One database for all examples of the property; each example uses its own streams."""
    name = asyncio.run(pg.clone(server_dsn, template_db))
    try:
        yield pg.with_database(server_dsn, name)
    finally:
        asyncio.run(pg.drop(server_dsn, name))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=appends)
def test_any_append_sequence_reads_back_identically(
    property_db: str, batch: list[tuple[int, list[Noted]]]
) -> None:
    asyncio.run(_check(property_db, batch))
