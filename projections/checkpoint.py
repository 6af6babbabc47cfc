"""Where the projections are: each one's checkpoint and failure, read for status and waiting.

Checkpoints and failures are written by the projections' followers of the log
(``jobstore.checkpoint``, ``jobstore.follower``); this module reads them by projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from jobstore import Cursor, query
from jobstore import checkpoint as log_checkpoint
from projections.projection import Connection

_Q = query.load("projections", "checkpoint.sql")


@dataclass(frozen=True, slots=True)
class Failure:
    """Where a projection stopped: the position and event it could not apply, and why."""

    position: int
    stream_id: str | None
    event_type: str | None
    error: str
    failed_at: datetime


@dataclass(frozen=True, slots=True)
class State:
    """A projection's checkpoint and, if it is stopped on an event, its failure."""

    name: str
    position: int
    updated_at: datetime | None
    failure: Failure | None
    transaction: int = 0

    @property
    def cursor(self) -> Cursor:
        """The checkpoint as a cursor (the last event applied, in the followers' order)."""
        return Cursor(self.transaction, self.position)


put = log_checkpoint.put
"""Set a checkpoint unconditionally (a rebuild swapping its tables in)."""

clear_failure = log_checkpoint.clear_failure
"""Forget a projection's failure (it was rebuilt)."""


async def states(conn: Connection | asyncpg.Pool, names: list[str]) -> list[State]:
    """The checkpoint and failure of each projection in ``names``, by name."""
    rows = await conn.fetch(_Q["read_states"], names)
    return [_state(row) for row in rows]


async def min_position(conn: Connection | asyncpg.Pool, names: list[str]) -> int:
    """The lowest checkpoint among ``names`` (0 for one that has none)."""
    return int(await conn.fetchval(_Q["min_position"], names) or 0)


def _state(row: Any) -> State:
    failure = None
    if row["failed_position"] is not None:
        failure = Failure(
            position=row["failed_position"],
            stream_id=row["failed_stream_id"],
            event_type=row["failed_event_type"],
            error=row["error"],
            failed_at=row["failed_at"],
        )
    return State(
        row["name"], int(row["position"] or 0), row["updated_at"], failure, int(row["xid"] or 0)
    )
