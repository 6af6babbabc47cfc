"""How far the projections got: position, lag, failure; and waiting for a position.

``wait_for_position`` is read-your-writes: after ``enqueue`` returns a log position, a
caller waits until every view has applied it instead of sleeping.  Projections follow the
log in (transaction, position) order (``jobstore.store``), so "applied" compares cursors:
the event's, looked up once, against each checkpoint.  ``reader_lag`` is what every
follower is held back by: events committed behind a transaction still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from jobstore import Cursor, EventStore, ReaderLag
from projections import catalog, checkpoint, errors

_FIRST_DELAY = 0.002
_MAX_DELAY = 0.05


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """One projection: where it is, how far behind the log, and why it stopped, if it did."""

    name: str
    position: int
    head: int
    failure: checkpoint.Failure | None

    @property
    def lag(self) -> int:
        """Log positions not yet applied."""
        return max(self.head - self.position, 0)

    def to_json(self) -> dict[str, Any]:
        """The status as JSON-compatible values."""
        failure = self.failure
        return {
            "name": self.name,
            "position": self.position,
            "head": self.head,
            "lag": self.lag,
            "error": None
            if failure is None
            else {
                "position": failure.position,
                "stream_id": failure.stream_id,
                "event_type": failure.event_type,
                "error": failure.error,
                "failed_at": failure.failed_at.isoformat(),
            },
        }


async def projection_status(
    pool: asyncpg.Pool, names: Sequence[str] | None = None
) -> list[ProjectionStatus]:
    """The status of each projection (all built-in ones for None), sorted by name."""
    wanted = sorted(names) if names is not None else catalog.names()
    head = await EventStore(pool).last_position()
    states = await checkpoint.states(pool, wanted)
    return [ProjectionStatus(s.name, s.position, head, s.failure) for s in states]


async def reader_lag(pool: asyncpg.Pool) -> ReaderLag:
    """Events every follower of the log is held back from by a transaction still running."""
    return await EventStore(pool).reader_lag()


async def wait_for_position(
    pool: asyncpg.Pool,
    position: int,
    timeout: float = 5.0,  # noqa: ASYNC109 - the documented read-your-writes signature
    names: Sequence[str] | None = None,
) -> None:
    """Return once every projection in ``names`` (default: all) has applied ``position``.

    Raises ProjectionFailed if one is stopped on an event at or before ``position``, and
    ProjectionTimeoutError if they do not get there within ``timeout`` seconds.
    """
    wanted = sorted(names) if names is not None else catalog.names()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = _FIRST_DELAY
    target: Cursor = await EventStore(pool).cursor_of(position)
    while True:
        states = await checkpoint.states(pool, wanted)
        behind = [s for s in states if s.cursor < target]
        if not behind:
            return
        _raise_if_stopped(behind, position)
        if loop.time() >= deadline:
            slowest = min(behind, key=lambda s: s.position)
            raise errors.ProjectionTimeoutError(
                f"projection {slowest.name!r} is at position {slowest.position}, not yet at "
                f"{position}, after {timeout:g} s; is a projection runner running?"
            )
        await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
        delay = min(delay * 2, _MAX_DELAY)


def _raise_if_stopped(behind: list[checkpoint.State], position: int) -> None:
    for state in behind:
        failure = state.failure
        if failure is not None and failure.position <= position:
            raise errors.ProjectionFailed(
                state.name,
                failure.position,
                failure.error,
                stream_id=failure.stream_id,
                event_type=failure.event_type,
            )
