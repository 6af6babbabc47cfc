"""The projections' shared log reader never hands out a short batch it has already read."""

from __future__ import annotations

import asyncio
from typing import Any

import jobstore
from jobstore import Cursor, Page
from projections.log_reader import LogReader


class OneEventLog:
    """A store whose log gets one more event every time it is read (the head moving)."""

    def __init__(self) -> None:
        self.reads = 0
        self.probe: Any = None

    async def read_after(self, cursor: Cursor, limit: int) -> Page:
        self.reads += 1
        if self.probe is not None:  # runs after this read is done, before its callbacks
            asyncio.get_running_loop().call_soon(self.probe)
            self.probe = None
        return Page(events=[object()] * min(self.reads, limit))  # type: ignore[list-item]


async def test_a_short_batch_just_read_is_not_handed_to_the_next_reader() -> None:
    """Between a short read's end and its done-callback, a reader asking for the same cursor
    must get a new read: the short batch was the head of the log then, and a projection
    woken by a newer notification would otherwise take it and wait for the next one."""
    log = OneEventLog()
    reader = LogReader(log, batch_size=5)  # type: ignore[arg-type]
    asked: list[Any] = []

    def ask_again() -> None:
        again = reader.after(jobstore.START)
        asked.append((again, again.send(None)))  # its synchronous part, in the window

    log.probe = ask_again
    first = await reader.after(jobstore.START)
    await asyncio.sleep(0.01)

    assert first.size == 1
    assert log.reads == 2, "the next reader was handed the short batch already read"
    reader.close()
    for coroutine, _ in asked:
        coroutine.close()
