"""Rebuild: replay the whole log into fresh copies of the views, then swap them in at once.

The rebuild queues for each projection's leadership lock (the live leader steps down for
it) and holds the locks throughout, so no runner writes into tables about to be dropped.
It clones the migrated tables into schema ``jobtrail_rebuild`` (the one runtime DDL,
through the functions of ``sql/0011`` to ``sql/0013``), reads the log once for all the
projections being rebuilt, builds the copies' secondary indexes at the end, two at a
time (faster than row by row), and in one transaction swaps the copies in and sets the
checkpoints, so readers see the old views until the new ones are complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog

import jobstore
from jobstore import EventStore, JobstoreError, RecordedEvent, query
from jobstore.follower import TRANSIENT
from projections import catalog, checkpoint, errors
from projections.projection import Projection, Tables, select, use_tables

log = structlog.get_logger("jobtrail.projections")
_Q = query.load("projections", "rebuild.sql")

INDEX_BUILDERS = 2
"""Secondary indexes built at once at the end of a rebuild (one connection each)."""
HELD_BACK_RETRY = 0.01
"""Seconds between reads while the log's end waits behind a transaction still running."""

Progress = Callable[[int, int], None]
"""Called after each batch with (position reached, head of the log)."""


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What a rebuild did: which projections, how many events, up to where, how fast."""

    names: list[str]
    events: int
    position: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Events replayed per second of the whole rebuild."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    pool: asyncpg.Pool,
    dsn: str,
    names: Sequence[str] | None = None,
    *,
    projections: Sequence[Projection] | None = None,
    progress: Progress | None = None,
    batch_size: int = 10_000,
    lock_timeout: float = 60.0,
) -> RebuildResult:
    """Rebuild the projections called ``names`` (all for None) from the whole log."""
    chosen = select(projections or catalog.builtin_projections(), names)
    tables = sorted(t for p in chosen for t in p.tables)
    started = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        for p in chosen:
            election = jobstore.Election(dsn, p.name)
            try:
                await stack.enter_async_context(election.queue(give_up_after=lock_timeout))
            except jobstore.LeadershipUnavailable as exc:
                raise errors.LeadershipUnavailable(f"projection {exc}") from None
        log.info("rebuild started", projections=[p.name for p in chosen])
        await pool.execute(_Q["create_shadow_tables"], tables)
        try:
            filler = _Filler(EventStore(pool), chosen, batch_size, progress)
            cursor, events = await filler.fill()
            position = cursor.position
            await _finish(pool, tables)
            await _swap(pool, chosen, tables, cursor)
        except BaseException:
            with contextlib.suppress(Exception):
                await pool.execute(_Q["drop_shadow_tables"], tables)
            raise
    seconds = time.perf_counter() - started
    result = RebuildResult([p.name for p in chosen], events, position, seconds)
    log.info("rebuild finished", projections=result.names, events=events, position=position)
    return result


async def _finish(pool: asyncpg.Pool, tables: list[str]) -> None:
    """Build the shadows' secondary indexes, two at a time, then their statistics.

    Readers are not held up: they read the live tables until the swap.
    """
    indexes = await pool.fetch(_Q["shadow_indexes"], tables)
    gate = asyncio.Semaphore(INDEX_BUILDERS)

    async def build(table: str, index: str) -> None:
        async with gate, pool.acquire() as conn, conn.transaction():
            await conn.execute(_Q["index_build_memory"])
            await conn.execute(_Q["build_shadow_index"], table, index)

    await asyncio.gather(*(build(row["table_name"], row["index_name"]) for row in indexes))
    await asyncio.gather(*(pool.execute(_Q["analyze_shadow_table"], t) for t in tables))


async def _swap(
    pool: asyncpg.Pool, chosen: Sequence[Projection], tables: list[str], cursor: jobstore.Cursor
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_Q["swap_shadow_tables"], tables)
        for p in chosen:
            await checkpoint.put(conn, p.name, cursor)
            await checkpoint.clear_failure(conn, p.name)


class _Filler:
    """Reads the log once (the next batch while the current one is applied) into shadows."""

    def __init__(
        self,
        store: EventStore,
        chosen: Sequence[Projection],
        batch_size: int,
        progress: Progress | None,
    ) -> None:
        self.store = store
        self.chosen = chosen
        self.batch_size = batch_size
        self.progress = progress

    async def fill(self) -> tuple[jobstore.Cursor, int]:
        """Apply the log up to its head at the start; return (cursor reached, events read).

        Events committed before the start but held back by a transaction still running are
        waited for; later ones are left to the runner, which goes on from the checkpoint
        the swap sets.
        """
        head = await self.store.last_position()
        target = await self.store.head()
        cursor, events = jobstore.START, 0
        pending = asyncio.ensure_future(self._read(cursor))
        try:
            while True:
                page = await pending
                batch = page.events
                if not batch:
                    if cursor < target and page.held_back:
                        await asyncio.sleep(HELD_BACK_RETRY)
                        pending = asyncio.ensure_future(self._read(cursor))
                        continue
                    break
                cursor = jobstore.Cursor.of(batch[-1])
                pending = asyncio.ensure_future(self._read(cursor))
                await self._apply(batch)
                events += len(batch)
                head = max(head, cursor.position)
                if self.progress is not None:
                    self.progress(cursor.position, head)
        finally:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        return cursor, events

    async def _read(self, after: jobstore.Cursor) -> jobstore.Page:
        try:
            return await self.store.read_after(after, self.batch_size)
        except TRANSIENT:
            raise
        except JobstoreError as exc:
            raise errors.ProjectionFailed(
                "+".join(p.name for p in self.chosen),
                after.position + 1,
                f"cannot read the log: {exc}",
            ) from exc

    async def _apply(self, batch: Sequence[RecordedEvent]) -> None:
        """Apply the batch to every projection at once, each on a connection of its own."""
        await asyncio.gather(*(self._apply_one(p, batch) for p in self.chosen))

    async def _apply_one(self, p: Projection, batch: Sequence[RecordedEvent]) -> None:
        try:
            await self._commit(p, batch)
        except TRANSIENT:
            raise
        except Exception:
            await self._locate(p, batch)

    async def _commit(self, p: Projection, batch: Sequence[RecordedEvent]) -> None:
        async with self.store.pool.acquire() as conn, conn.transaction():
            await use_tables(conn, Tables.SHADOW)
            await p.apply(conn, batch)

    async def _locate(self, p: Projection, batch: Sequence[RecordedEvent]) -> None:
        """Apply event by event to name the one that fails."""
        for recorded in batch:
            try:
                await self._commit(p, [recorded])
            except TRANSIENT:
                raise
            except Exception as exc:
                raise errors.ProjectionFailed(
                    p.name,
                    recorded.position,
                    f"{type(exc).__name__}: {exc}",
                    stream_id=recorded.stream_id,
                    event_type=recorded.type_name,
                ) from exc
