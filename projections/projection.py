"""What a projection is: a name, the tables it owns, and how it applies a batch of events."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from jobstore import RecordedEvent, query
from projections import errors

_Q = query.load("projections", "projection.sql")

Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one borrowed from the pool."""


class Tables(Enum):
    """Which copy of its tables a projection writes: the live views or a rebuild's shadows."""

    LIVE = "use_live_tables"
    SHADOW = "use_shadow_tables"


class Projection(Protocol):
    """A read model folded from the log.

    ``apply`` runs inside the caller's transaction (which also moves the checkpoint) and
    writes through unqualified table names, which :func:`use_tables` points at the live
    views or at a rebuild's shadow copies.  It must be deterministic: the same events give
    the same rows, applied once or rebuilt.
    """

    @property
    def name(self) -> str:
        """The projection's name (its checkpoint's name)."""
        ...

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables it owns in schema ``jobtrail`` (sorted), swapped by a rebuild."""
        ...

    async def apply(self, conn: Connection, batch: Sequence[RecordedEvent]) -> None:
        """Fold ``batch`` (consecutive events, in position order) into the tables."""
        ...


async def use_tables(conn: Connection, tables: Tables) -> None:
    """Point this transaction's unqualified table names at ``tables``."""
    await conn.execute(_Q[tables.value])


def select(projections: Sequence[Projection], names: Sequence[str] | None) -> list[Projection]:
    """The projections called ``names`` (all of them for None), sorted by name."""
    by_name = {p.name: p for p in projections}
    if names is None:
        return [by_name[n] for n in sorted(by_name)]
    for name in names:
        if name not in by_name:
            raise errors.UnknownProjectionError(name, sorted(by_name))
    return [by_name[n] for n in sorted(set(names))]
