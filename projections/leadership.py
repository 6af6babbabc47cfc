"""Leadership: exactly one process applies a projection at a time.

The leader holds a PostgreSQL session advisory lock on a connection of its own.  When
its process dies the connection closes, PostgreSQL releases the lock, and a standby
(which tries again every ``retry`` seconds) takes over.  A rebuild does not try but
queues for the lock; the leader notices the queued request between batches and steps
down, so the rebuild gets the lock next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import structlog

from jobstore import DatabaseUnavailableError, connect, query
from projections import errors

log = structlog.get_logger("jobtrail.projections")
_Q = query.load("projections", "leadership.sql")


class Lease:
    """Leadership of one projection, held by a dedicated connection."""

    def __init__(self, name: str, conn: asyncpg.Connection) -> None:
        self.name = name
        self.conn = conn

    @property
    def held(self) -> bool:
        """Whether the lock's connection is still open (so the lock is still ours)."""
        return not self.conn.is_closed()

    async def wanted(self) -> bool:
        """Whether someone (a rebuild) waits for this leadership."""
        try:
            return bool(await self.conn.fetchval(_Q["lead_wanted"], self.name))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise errors.LeadershipLost(
                f"lost the lock connection of {self.name!r}: {exc}"
            ) from None


@contextlib.asynccontextmanager
async def lead(
    dsn: str, name: str, *, retry: float = 1.0, give_up_after: float | None = None
) -> AsyncIterator[Lease]:
    """Become the leader of ``name`` (trying every ``retry`` s); give it up on exit."""
    conn = await _open(dsn)
    try:
        loop = asyncio.get_running_loop()
        deadline = None if give_up_after is None else loop.time() + give_up_after
        while not await conn.fetchval(_Q["try_lead"], name):
            if deadline is not None and loop.time() >= deadline:
                raise errors.LeadershipUnavailable(
                    f"another process led projection {name!r} for all of {give_up_after:g} s"
                )
            await asyncio.sleep(retry)
        log.info("projection leadership taken", projection=name)
        yield Lease(name, conn)
    finally:
        await _close(conn)  # closing the session releases the lock


@contextlib.asynccontextmanager
async def queue_for(dsn: str, name: str, *, give_up_after: float) -> AsyncIterator[Lease]:
    """Wait in line for the leadership of ``name`` (the leader steps down for us)."""
    conn = await _open(dsn)
    try:
        try:
            await conn.fetchval(_Q["queue_for_lead"], name, timeout=give_up_after)
        except TimeoutError:
            raise errors.LeadershipUnavailable(
                f"projection {name!r} is led by a process that did not step down within "
                f"{give_up_after:g} s; is an old jobtrail version running it?"
            ) from None
        yield Lease(name, conn)
    finally:
        await _close(conn)


async def _open(dsn: str) -> asyncpg.Connection:
    conn = await connect(dsn)
    try:
        await conn.execute(_Q["keep_alive"])
    except (asyncpg.PostgresError, OSError) as exc:
        await _close(conn)
        raise DatabaseUnavailableError(f"cannot prepare the leadership connection: {exc}") from None
    except BaseException:  # cancelled while preparing: do not leak the connection
        conn.terminate()
        raise
    return conn


async def _close(conn: asyncpg.Connection) -> None:
    """Close the session (releasing its advisory locks), even when cancelled meanwhile."""
    try:
        await conn.close(timeout=2)
    except Exception:
        conn.terminate()
    except BaseException:
        conn.terminate()
        raise
