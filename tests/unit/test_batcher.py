"""The group-commit batcher: every request it accepts is flushed, however the flushes end."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from jobstore.batcher import AppendBatcher


@dataclass(frozen=True)
class Request:
    stream_id: str


async def test_a_request_made_as_the_last_flush_ends_is_flushed() -> None:
    """A flusher that has just returned is no longer running, even before asyncio has run
    its done-callbacks: a request made in that moment must start a flush of its own.

    Counting such a flusher as running left the request queued with nobody to flush it,
    until some later request came (seen as deliveries' outcomes held 30-70 s at the end of
    a flood, the last batch of a quiet host)."""

    async def run(batch: Sequence[Any]) -> list[Any]:
        return [[len(batch)] for _ in batch]

    batcher: AppendBatcher[list[int]] = AppendBatcher(run, max_flushes=1)
    # This coroutine awaits "a"'s outcome itself, so it resumes before the flusher's
    # done-callbacks run (both are scheduled when the flusher ends, in that order).
    assert await batcher.submit(Request("a")) == [1]
    # Run the next request's submit up to its own wait, here and now, as a delivery
    # resumed in that moment would.
    second = batcher.submit(Request("b"))
    outcome = second.send(None)
    await asyncio.sleep(0.05)

    assert outcome.done(), "the request made as the last flush ended was never flushed"
    with pytest.raises(StopIteration) as done:
        second.send(None)
    assert done.value.value == [1]


async def test_requests_of_one_stream_go_in_order_one_per_batch() -> None:
    """Two requests of one stream never share a statement; the older goes first."""
    seen: list[list[str]] = []

    async def run(batch: Sequence[Any]) -> list[Any]:
        seen.append([r.stream_id for r in batch])
        await asyncio.sleep(0.01)
        return [[i] for i, _ in enumerate(batch)]

    batcher: AppendBatcher[list[int]] = AppendBatcher(run, max_flushes=1)
    results = await asyncio.gather(*(batcher.submit(Request(s)) for s in ["a", "a", "b", "a"]))

    assert len(results) == 4
    assert all(len(set(batch)) == len(batch) for batch in seen)
    assert sum(batch.count("a") for batch in seen) == 3
