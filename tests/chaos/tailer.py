"""A reader tailing the log through every fault, as ``jobtrail events tail --follow`` does.

It keeps the position of every event it is handed, so the run can compare what it saw
with the log at the end.  If its subscription dies (an error the subscription does not
ride out itself), the tailer notes the error and starts again from its cursor, as any
reader would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import structlog

import jobstore
from jobstore import Cursor, EventStore

log = structlog.get_logger("chaos.tailer")


class Tailer:
    """Follows the log from its start in a task of its own; ``seen`` grows as it reads."""

    def __init__(self, store: EventStore, dsn: str) -> None:
        self.store, self.dsn = store, dsn
        self.cursor = jobstore.START
        self.seen: list[int] = []
        self.restarts: Counter[str] = Counter()
        """Errors that ended a running subscription (it was started again), by type: a
        subscription should ride out a database restart itself."""
        self.connect_failures = 0
        """Starts that failed because the database was down (tried again)."""
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Tailer:
        self._task = asyncio.create_task(self._run(), name="chaos-tailer")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            entered = False
            try:
                async with jobstore.Subscription(
                    self.store, self.dsn, after=self.cursor, idle_poll=0.5
                ) as subscription:
                    entered = True
                    async for recorded in subscription:
                        self.seen.append(recorded.position)
                        self.cursor = Cursor.of(recorded)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noted, then read on from the cursor
                if entered or not isinstance(exc, jobstore.DatabaseUnavailableError):
                    self.restarts[type(exc).__name__] += 1
                    log.warning(
                        "tailer restarts",
                        error=f"{type(exc).__name__}: {exc}"[:300],
                        exc_info=exc,  # where in the subscription it escaped
                    )
                else:
                    self.connect_failures += 1
                await asyncio.sleep(0.5)

    def reached(self, head: Cursor) -> bool:
        """Whether the tailer has read up to ``head``."""
        return self.cursor >= head
