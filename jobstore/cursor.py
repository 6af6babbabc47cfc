"""Where a follower of the log stands: the last (transaction, position) it read.

Followers read the log in (transaction id, position) order, and only events written by
transactions older than every transaction still running (see
``sql/0019_read_by_transaction_order.sql`` and :mod:`jobstore.store`).  Positions are the
events' identity; the cursor is where a reader is in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from jobstore.event import RecordedEvent


class Cursor(NamedTuple):
    """The (transaction id, position) of the last event read; tuples order like the log."""

    transaction: int
    position: int

    @classmethod
    def of(cls, recorded: RecordedEvent) -> Cursor:
        """The cursor right after ``recorded``."""
        return cls(recorded.transaction, recorded.position)


START = Cursor(0, 0)
"""Before the first event."""


@dataclass(frozen=True, slots=True)
class Page:
    """A batch of events after a cursor, and whether committed events wait behind it.

    ``held_back`` says the log holds committed events that readers may not read yet, because
    an older transaction is still running; a reader that got a short page should look again
    soon instead of waiting for a notification (the transaction that ends may not notify).

    A page read for some event types only (``EventStore.read_after(..., types=...)``) holds
    the events of those types, but covers every event of the log up to its end: ``covered``
    counts them all and ``end`` is the cursor after the last one, whatever its type.  When
    they are None (a page of every type), the page covers exactly its events.
    """

    events: Sequence[RecordedEvent]
    held_back: bool = False
    covered: int | None = None
    end: Cursor | None = None

    @property
    def size(self) -> int:
        """How many events of the log the page covers (events of other types included)."""
        return len(self.events) if self.covered is None else self.covered

    def last(self, default: Cursor) -> Cursor:
        """The cursor after this page (``default`` if it covers nothing)."""
        if self.end is not None:
            return self.end
        return Cursor.of(self.events[-1]) if self.events else default
