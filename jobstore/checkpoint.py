"""Checkpoints (how far each follower of the log got) and failures (where one stopped, and why).

A follower writes its effects and its checkpoint in one transaction; the checkpoint moves
by compare-and-set, so a batch is handled once even if two processes ever tried at once.
A checkpoint is a :class:`jobstore.cursor.Cursor`: the (transaction, position) of the last
event handled (followers read in that order; see ``jobstore.store``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from jobstore import query
from jobstore.cursor import START, Cursor

_Q = query.load("jobstore", "checkpoint.sql")

Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one borrowed from the pool."""


async def read(conn: Connection | asyncpg.Pool, name: str) -> Cursor:
    """Where follower ``name`` got to (START if it never saved a checkpoint)."""
    row = await conn.fetchrow(_Q["read_checkpoint"], name)
    return START if row is None else Cursor(int(row["xid"]), int(row["position"]))


async def advance(conn: Connection, name: str, expected: Cursor, new: Cursor) -> bool:
    """Move the checkpoint from ``expected`` to ``new``; False if it was not at ``expected``.

    Call inside the transaction that writes the batch's effects.
    """
    return bool(await conn.fetchval(_Q["advance_checkpoint"], name, *expected, *new))


async def put(conn: Connection, name: str, cursor: Cursor) -> None:
    """Set the checkpoint unconditionally (a rebuild swapping its tables in)."""
    await conn.execute(_Q["set_checkpoint"], name, *cursor)


async def record_failure(
    conn: Connection | asyncpg.Pool,
    name: str,
    position: int,
    error: str,
    *,
    stream_id: str | None = None,
    event_type: str | None = None,
) -> None:
    """Remember that follower ``name`` stopped at ``position`` and why."""
    await conn.execute(_Q["record_failure"], name, position, stream_id, event_type, error)


async def clear_failure(conn: Connection, name: str) -> None:
    """Forget a follower's failure (it handled past it, or was rebuilt)."""
    await conn.execute(_Q["clear_failure"], name)


async def next_event(conn: Connection | asyncpg.Pool, after: Cursor) -> Any:
    """Position, stream and type of the first readable event after ``after`` (not decoded)."""
    return await conn.fetchrow(_Q["next_event"], *after)
