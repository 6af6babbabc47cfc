"""The process's PostgreSQL connection pool, with a fast jsonb codec, and its life cycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import orjson
import structlog

from jobstore import errors, keyring
from jobstore.embedded import EmbeddedPostgres
from jobstore.retry import RetryPolicy
from jobstore.settings import Settings

log = structlog.get_logger("jobtrail.database")
T = TypeVar("T")
RIDE_OUT_DELAYS = RetryPolicy(first=0.05, cap=1.0)
"""How often work looks again for a database that went away (see :class:`Runner`)."""

# jsonb's binary wire format is a version byte (1) followed by the JSON text.
_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    if isinstance(value, bytes):  # already encoded (and checked) by jobstore.codec
        return _JSONB_VERSION + value
    return _JSONB_VERSION + orjson.dumps(value)


def _decode_jsonb(raw: bytes) -> Any:
    return orjson.loads(raw[1:])


def _encode_json(value: Any) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Set up a new connection: json and jsonb in and out through orjson, in binary."""
    await conn.set_type_codec(
        "json", encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


async def connect(dsn: str) -> asyncpg.Connection:
    """Open one connection with jobtrail's codecs (for LISTEN or locks held for long)."""
    try:
        conn = await asyncpg.connect(dsn)
    except Exception as exc:
        raise _cannot_connect(dsn, exc) from None
    try:
        await init_connection(conn)
    except BaseException:  # cancelled or failed half-way: never leak the connection
        conn.terminate()
        raise
    return conn


class PooledConnection(asyncpg.Connection):
    """A pooled connection that knows when its server session may be inside a transaction.

    asyncpg prepares a statement it has not cached with Parse, Describe and **Flush**, not
    Sync, and sends Bind, Execute and Sync only after the answer.  On the server the Parse
    opens an implicit transaction (with a snapshot, and an ACCESS SHARE lock on every table
    the statement names) that only a Sync ends, and no ReadyForQuery tells asyncpg about
    it.  An operation that stops between the two halves (its task cancelled just after the
    Parse was answered, a ``timeout=`` the Parse used up, an argument asyncpg cannot encode
    for the Bind, ``Connection.prepare`` or a cursor, which never sends the Sync) leaves the
    session inside that transaction while ``is_in_transaction()`` says it is not: the next
    ``BEGIN ISOLATION LEVEL REPEATABLE READ`` on the connection then fails with
    ``SET TRANSACTION ISOLATION LEVEL must be called before any query``, and the locks
    stay held while the connection waits in the pool.

    ``unsynced`` is set before any statement is prepared (or looked up in the cache) and
    cleared once a statement of the same operation was answered up to its ReadyForQuery,
    whose Sync ends any such transaction.
    """

    unsynced = False
    """A Parse may have been sent that no Sync has ended since (see the class)."""

    async def _get_statement(self, *args: Any, **kwargs: Any) -> Any:
        self.unsynced = True
        return await super()._get_statement(*args, **kwargs)  # type: ignore[misc]

    async def _do_execute(self, *args: Any, **kwargs: Any) -> Any:
        result = await super()._do_execute(*args, **kwargs)  # type: ignore[misc]
        self.unsynced = False  # its Bind/Execute/Sync was answered: no implicit transaction
        return result


async def reset_if_unsynced(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: asyncpg's reset query only for an unsynced connection.

    asyncpg's pool calls ``Connection._reset()`` before this: it rolls back a transaction
    the protocol knows is open (every ReadyForQuery carries the session's transaction
    state, and the pool waits for the answer to a cancelled statement before it resets)
    and drops the connection's listeners.  What that cannot see is the implicit
    transaction of a Parse that no Sync ended (:class:`PooledConnection`); for such a
    connection the default reset query is sent, whose simple Query commits that
    transaction (it took no write) and clears every other kind of session state as before.
    Everything else is left as it is: jobtrail keeps no session state on pooled
    connections (advisory locks and LISTEN live on dedicated connections from
    :func:`connect`; settings are ``SET LOCAL`` or ``set_config(..., true)``), which
    tests/integration/test_pool_reset.py checks after thousands of randomly cancelled
    operations.
    """
    if getattr(conn, "unsynced", True):  # not ours: do what asyncpg would
        await conn.execute(conn.get_reset_query())
        if isinstance(conn, PooledConnection):
            conn.unsynced = False


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """Create the process's pool; a server that cannot be reached is a clear error.

    A connection goes back to the pool without asyncpg's reset query (``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``, one round trip per
    release, 7.5 % of the host's CPU in an end-to-end flood) unless its session may be
    inside a transaction asyncpg does not know about (:func:`reset_if_unsynced`).  Skipping
    it unconditionally (2026-11-28, reverted) let such a transaction reach the next user
    of the connection.
    """
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            reset=reset_if_unsynced,
            connection_class=PooledConnection,
        )
    except Exception as exc:
        raise _cannot_connect(dsn, exc) from None
    return pool


def _cannot_connect(dsn: str, exc: Exception) -> Exception:
    """A refused or failed connection as DatabaseUnavailableError; other errors as they are."""
    if not (isinstance(exc, asyncpg.PostgresError) or errors.is_transient(exc)):
        return exc
    return errors.DatabaseUnavailableError(f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}")


def redact(dsn: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    creds, at, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***{at}{host}" if ":" in creds else dsn


async def close_quietly(conn: asyncpg.Connection) -> None:
    """Close a dedicated connection; if that fails or is cancelled, drop it at once."""
    try:
        await conn.close(timeout=2)
    except Exception:
        conn.terminate()
    except BaseException:
        conn.terminate()
        raise


class Runner:
    """Runs work on a pool's connections, waiting out a brief outage (the one place).

    A transient failure (:func:`jobstore.errors.is_transient`: PostgreSQL restarting, a
    connection lost) is tried again for up to ``ride_out`` seconds before it is raised as
    DatabaseUnavailableError, where trying again is safe: always while getting a
    connection (nothing was sent yet), and after a failed statement only for ``rerun``
    work: reads, and writes the database makes idempotent.  Work on a connection the
    caller holds is never run again (its transaction is gone with it).  Other errors are
    raised as they are, for the caller to translate.
    """

    def __init__(self, pool: asyncpg.Pool, ride_out: float = 0.0) -> None:
        self.pool = pool
        self.ride_out = ride_out
        self.waits = 0
        """Times work waited for the database to come back (the host's /metrics)."""

    async def run(
        self,
        work: Callable[[Any], Awaitable[T]],
        connection: Any = None,
        *,
        rerun: bool = True,
        what: str = "the database",
    ) -> T:
        """``work(conn)`` on ``connection``, or on a pooled connection (see the class)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ride_out
        delays = RIDE_OUT_DELAYS.delays()
        while True:
            sent = False
            try:
                if connection is not None:
                    sent = True
                    return await work(connection)
                async with self.pool.acquire() as conn:
                    sent = True
                    return await work(conn)
            except Exception as exc:
                if not errors.is_transient(exc):
                    raise
                delay = delays.next()
                again = connection is None and (rerun or not sent)
                again = again and not isinstance(exc, asyncpg.QueryCanceledError)  # too slow
                if not again or loop.time() + delay > deadline:
                    raise errors.unavailable(exc, f"{what} lost its database") from None
                log.info("database unavailable; trying again", what=what, error=type(exc).__name__)
                self.waits += 1
                await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class Database:
    """An open database: its URL, its pool, and whether it is the embedded server."""

    dsn: str
    pool: asyncpg.Pool
    embedded: bool


@asynccontextmanager
async def resolve_dsn(settings: Settings) -> AsyncIterator[tuple[str, bool]]:
    """Yield ``(dsn, embedded)``: DATABASE_URL, or an embedded server started for the block."""
    if settings.database_url:
        yield settings.database_url, False
        return
    server = EmbeddedPostgres(settings.pgdata_dir)
    log.info("starting embedded postgresql", pgdata=str(server.pgdata))
    dsn = await asyncio.to_thread(server.start)
    try:
        yield dsn, True
    finally:
        await asyncio.to_thread(server.stop)


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """Open the configured database (starting the embedded one if needed) and its pool."""
    keyring.configure(settings)
    async with resolve_dsn(settings) as (dsn, embedded):
        pool = await create_pool(
            dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size
        )
        try:
            yield Database(dsn=dsn, pool=pool, embedded=embedded)
        finally:
            await pool.close()
