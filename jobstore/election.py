"""Elections: at most one process holds a named role (a follower of the log) at a time.

The holder keeps a PostgreSQL session advisory lock on a connection of its own; standbys
try for it every ``retry`` seconds and one of them takes over when the holder's connection
ends.  Someone who must not wait its turn among standbys (a projection rebuild) queues for
the lock instead; the holder sees the queued request and steps down.

Why an advisory lock on a dedicated connection, and not a row lock or a lease table:

* A lease row with an expiry needs a clock and a renewal loop, and between a holder that
  stalls (a long GC pause, a frozen VM) and its lease running out, a standby that trusts
  the clock can lead alongside it.  A session lock has no expiry to get wrong: it is held
  exactly as long as the session lives, and PostgreSQL ends the session of a dead peer
  (with the TCP keep-alives and user timeout set below, within ~15 s; without them, a
  vanished holder would keep its role for hours).
* A row lock (``SELECT … FOR UPDATE``) lives only as long as a transaction; holding one
  for hours keeps a transaction open, which holds back vacuum and, in jobtrail, holds
  back every reader of the log (they read only below the oldest running transaction).
  A session lock needs no open transaction.
* The connection is dedicated (never a pooled one) because the lock belongs to the
  session: a pooled connection goes back to the pool, where asyncpg's reset unlocks
  everything, or to another task that would then "hold" the lock without knowing it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import structlog

from jobstore import database, errors, query

log = structlog.get_logger("jobtrail.election")
_Q = query.load("jobstore", "election.sql")
HEARTBEAT_TIMEOUT = 15.0
"""Seconds the holder waits for its heartbeat's answer (the server's own limit on a silent
peer, election.sql's keep_alive, is about as long)."""


class LeadershipLost(errors.JobstoreError):
    """This process no longer holds the role; another one may hold it now."""


class LeadershipUnavailable(errors.JobstoreError):
    """Another process held the role for longer than we could wait."""


class Lease:
    """A role held by this process, for as long as its dedicated connection lives."""

    def __init__(self, name: str, conn: asyncpg.Connection, key: tuple[int, int]) -> None:
        self.name = name
        self.conn = conn
        self.key = key

    @property
    def held(self) -> bool:
        """Whether the lock's connection is still open (so the role is still ours)."""
        return not self.conn.is_closed()

    async def wanted(self) -> bool:
        """Whether someone queues for the role; raises LeadershipLost if we lost it.

        Also the holder's heartbeat: a server that does not answer within
        HEARTBEAT_TIMEOUT seconds (this machine was cut off) counts as lost, as the server
        will end our session (and free the role) by then.
        """
        try:
            found = await self.conn.fetchval(
                _Q["lead_wanted"], *self.key, timeout=HEARTBEAT_TIMEOUT
            )
        except Exception as exc:
            if not errors.is_transient(exc):
                raise
            self.conn.terminate()  # whatever it was doing, this session is no longer ours
            raise LeadershipLost(
                f"lost the lock connection of {self.name!r}: {type(exc).__name__}: {exc}"
            ) from None
        return bool(found)

    async def release(self) -> None:
        """Give the role up (ending the session releases the lock), even if cancelled."""
        await database.close_quietly(self.conn)


@dataclass(frozen=True, slots=True)
class Election:
    """Who holds the role ``name`` among the processes on one database."""

    dsn: str
    name: str
    retry: float = 1.0

    @contextlib.asynccontextmanager
    async def lead(self, *, give_up_after: float | None = None) -> AsyncIterator[Lease]:
        """Hold the role for the block, trying every ``retry`` s until it is free."""
        lease = await self._open()
        try:
            loop = asyncio.get_running_loop()
            deadline = None if give_up_after is None else loop.time() + give_up_after
            while not await lease.conn.fetchval(_Q["try_lead"], *lease.key):
                if deadline is not None and loop.time() >= deadline:
                    raise LeadershipUnavailable(
                        f"another process held {self.name!r} for all of {give_up_after:g} s"
                    )
                await asyncio.sleep(self.retry)
            log.info("leadership taken", role=self.name)
            yield lease
        finally:
            await lease.release()

    @contextlib.asynccontextmanager
    async def queue(self, *, give_up_after: float) -> AsyncIterator[Lease]:
        """Wait in line for the role (its holder steps down for us), then hold it."""
        lease = await self._open()
        try:
            try:
                await lease.conn.fetchval(_Q["queue_for_lead"], *lease.key, timeout=give_up_after)
            except TimeoutError:
                raise LeadershipUnavailable(
                    f"{self.name!r} is held by a process that did not step down within "
                    f"{give_up_after:g} s; is an old jobtrail version running it?"
                ) from None
            yield lease
        finally:
            await lease.release()

    async def _open(self) -> Lease:
        conn = await database.connect(self.dsn)
        try:
            await conn.execute(_Q["keep_alive"])
            row = await conn.fetchrow(_Q["lock_key"], self.name)
        except BaseException as exc:  # failed or cancelled half-way: never leak it
            conn.terminate()
            if isinstance(exc, asyncpg.PostgresError) or errors.is_transient(exc):
                raise errors.DatabaseUnavailableError(
                    f"cannot prepare the lock connection of {self.name!r}: {exc}"
                ) from None
            raise
        assert row is not None
        return Lease(self.name, conn, (row["class_id"], row["object_id"]))
