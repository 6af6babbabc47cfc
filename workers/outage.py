"""The host's one answer to a database outage: 503 with ``Retry-After``, never a 500.

Every route and the host's error middleware map a failure through :func:`answer_for`, so a
connection that closed mid-request (asyncpg's ``ConnectionDoesNotExistError`` is a
``PostgresError``), a server restarting or a pool that cannot connect is answered alike:
QStash (or any client) tries again later, and no handler retry is spent on a 500.  The
store has already waited the outage out for ``JOBTRAIL_DATABASE_RIDE_OUT_SECONDS`` where
that was safe (``jobstore.EventStore``).
"""

from __future__ import annotations

from typing import Final

from jobstore import is_transient
from workers.decision import Answer

RETRY_AFTER_SECONDS: Final = 5
UNAVAILABLE: Final = Answer(
    503, "database unavailable; retry later", retry_after=RETRY_AFTER_SECONDS
)


def answer_for(exc: BaseException) -> Answer | None:
    """The 503 answer when ``exc`` is a database outage (:func:`jobstore.is_transient`)."""
    return UNAVAILABLE if is_transient(exc) else None
