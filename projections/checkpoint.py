"""Checkpoints (how far each projection got) and failures (where one stopped, and why).

A projection's writes and its checkpoint commit in one transaction; the checkpoint moves
by compare-and-set, so a batch is applied once even if two processes ever tried at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from jobstore import query
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


async def ensure(conn: Connection, name: str) -> int:
    """Create the checkpoint at 0 if it does not exist; return its position."""
    await conn.execute(_Q["ensure_checkpoint"], name)
    return int(await conn.fetchval(_Q["read_checkpoint"], name))


async def advance(conn: Connection, name: str, expected: int, position: int) -> bool:
    """Move the checkpoint from ``expected`` to ``position``; False if it was not at ``expected``.

    Call inside the transaction that writes the batch's effects.
    """
    status: str = await conn.execute(_Q["advance_checkpoint"], name, expected, position)
    return status == "UPDATE 1"


async def put(conn: Connection, name: str, position: int) -> None:
    """Set the checkpoint unconditionally (a rebuild swapping its tables in)."""
    await conn.execute(_Q["set_checkpoint"], name, position)


async def record_failure(
    conn: Connection,
    name: str,
    position: int,
    error: str,
    *,
    stream_id: str | None = None,
    event_type: str | None = None,
) -> None:
    """Remember that ``name`` stopped at ``position`` and why."""
    await conn.execute(_Q["record_failure"], name, position, stream_id, event_type, error)


async def clear_failure(conn: Connection, name: str) -> None:
    """Forget a projection's failure (it applied past it, or was rebuilt)."""
    await conn.execute(_Q["clear_failure"], name)


async def states(conn: Connection | asyncpg.Pool, names: list[str]) -> list[State]:
    """The checkpoint and failure of each projection in ``names``, by name."""
    rows = await conn.fetch(_Q["read_states"], names)
    return [_state(row) for row in rows]


async def min_position(conn: Connection | asyncpg.Pool, names: list[str]) -> int:
    """The lowest checkpoint among ``names`` (0 for one that has none)."""
    return int(await conn.fetchval(_Q["min_position"], names) or 0)


async def next_event(conn: Connection, after: int) -> asyncpg.Record | None:
    """Position, stream and type of the first event after ``after`` (without decoding it)."""
    row: asyncpg.Record | None = await conn.fetchrow(_Q["next_event"], after)
    return row


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
    return State(row["name"], int(row["position"] or 0), row["updated_at"], failure)
