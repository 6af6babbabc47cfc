"""Rotation of the master data key: every data key wrapped anew by ``JOBTRAIL_DATA_KEY``.

A rotation sets a new ``JOBTRAIL_DATA_KEY`` with the old one in
``JOBTRAIL_DATA_PREVIOUS_KEYS`` (readers open the keys either wrapped, by the key each row
names), then :func:`rewrap` wraps every data key still wrapped by another master key with
the current one, a short transaction per batch, and vacuums the key table so the old wrapped
bytes do not stay in its pages.  :func:`status` counts the keys by master key: once none is
left under a previous key, that key may be dropped.

Rewrapping is safe alongside running hosts and erasures: a key is rewrapped only under a row
lock taken by the transaction that stores it, and only while it is not erased, so an
erasure, before, during or after, always wins (a key it destroyed is never written back).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, cast

import asyncpg
import structlog

from jobstore import errors, keyring, query

log = structlog.get_logger("jobtrail.rotation")
_Q = query.load("jobstore", "keyring.sql")
BATCH_SIZE: Final = 500
"""Data keys rewrapped per transaction."""
_FIRST: Final = "00000000-0000-0000-0000-000000000000"

Progress = Callable[[int, int], None]
"""Called after each batch with the keys rewrapped so far and how many there are in all."""


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """The data keys counted by the master key that wrapped them, as one snapshot, and the
    master keys this process holds."""

    current: str
    """The id (fingerprint) of this process's JOBTRAIL_DATA_KEY."""
    previous: tuple[str, ...]
    """The ids of its JOBTRAIL_DATA_PREVIOUS_KEYS."""
    by_master_key: dict[str, int]
    """Data keys not erased, by the id of the master key that wrapped them."""
    erased: int
    """Erased keys (tombstones: no wrapped key left, so no master key needed)."""

    def held_as(self, key_id: str) -> Literal["current", "previous", "not held"]:
        """How this process holds master key ``key_id``."""
        if key_id == self.current:
            return "current"
        return "previous" if key_id in self.previous else "not held"

    @property
    def to_rewrap(self) -> dict[str, int]:
        """The data keys not wrapped by the current key, by the master key that wrapped them."""
        return {k: n for k, n in self.by_master_key.items() if k != self.current}

    @property
    def droppable(self) -> tuple[str, ...]:
        """The previous keys no data key needs any more (they may leave the settings)."""
        return tuple(k for k in self.previous if k not in self.by_master_key)


@dataclass(frozen=True, slots=True)
class Rewrapped:
    """What :func:`rewrap` did: the keys it rewrapped by the master key that wrapped them
    before, the key that wraps them now, and whether the key table was vacuumed."""

    master_key_id: str
    by_master_key: dict[str, int]
    vacuumed: bool

    @property
    def count(self) -> int:
        """How many data keys were rewrapped."""
        return sum(self.by_master_key.values())


async def status(pool: asyncpg.Pool) -> KeyStatus:
    """The data keys by master key, with the keys this process holds."""
    master = keyring.master_key()
    try:
        rows = await pool.fetch(_Q["count_keys_by_master_key"])
    except asyncpg.PostgresError as exc:
        raise errors.EventStoreError(f"the data key table failed: {exc}") from None
    counts = {r["master_key_id"]: int(r["keys"]) for r in rows}
    erased = counts.pop(None, 0)
    return KeyStatus(master.key_id, master.previous_ids, counts, erased)


def check_held(found: KeyStatus) -> None:
    """Refuse (DataKeyError) when a data key is wrapped by a master key this process lacks."""
    missing = sorted(k for k in found.to_rewrap if found.held_as(k) == "not held")
    if not missing:
        return
    first, *others = missing
    also = f"; nor master key(s) {', '.join(others)}" if others else ""
    error = keyring.master_key().not_held(first, f"{found.by_master_key[first]} data key(s)")
    raise keyring.DataKeyError(f"{error}{also}; nothing was rewrapped")


async def rewrap(
    pool: asyncpg.Pool, *, batch_size: int = BATCH_SIZE, progress: Progress | None = None
) -> Rewrapped:
    """Wrap every data key not wrapped by the current master key with it, then VACUUM the
    key table; refused, nothing changed, when a key's master key is not held here, or when
    the current key is the public development key (it would open them for anyone).

    Keys made meanwhile by a host still on an older current key are rewrapped too, until
    none is left; keys an erasure holds are taken once it is over (and passed over when it
    erased them).  Run again, it rewraps only what is left: an interrupted run loses nothing.
    """
    master = keyring.master_key()
    before = await status(pool)
    check_held(before)
    done: Counter[str] = Counter()
    total = sum(before.to_rewrap.values())
    if total and master.key_id == keyring.DEV_MASTER_KEY_ID:
        raise keyring.DataKeyError(
            f"JOBTRAIL_DATA_KEY is the public development key: rewrapping would put {total:,} "
            "data key(s) under a key anyone can read; set JOBTRAIL_DATA_KEY to a key of your "
            "own (the old one in JOBTRAIL_DATA_PREVIOUS_KEYS); nothing was rewrapped"
        )
    after = _FIRST
    try:
        async with pool.acquire() as proxy:
            conn = cast(asyncpg.Connection, proxy)
            while True:
                rows = await _rewrap(conn, "lock_keys_to_rewrap", master.key_id, after, batch_size)
                if rows:
                    after = rows[-1]["job_id"]
                else:  # the end: wait for the keys skipped while an erasure held them
                    rows = await _rewrap(conn, "lock_key_to_rewrap", master.key_id)
                    if not rows:
                        break
                    after = _FIRST
                done.update(r["master_key_id"] for r in rows)
                total = max(total, done.total())
                if progress is not None:
                    progress(done.total(), total)
            vacuumed = await keyring.vacuum_keys(conn)
    except asyncpg.PostgresError as exc:
        raise errors.EventStoreError(f"rewrapping the data keys failed: {exc}") from None
    log.info("data keys rewrapped", count=done.total(), before=dict(done), vacuumed=vacuumed)
    return Rewrapped(master.key_id, dict(sorted(done.items())), vacuumed)


async def _rewrap(conn: asyncpg.Connection, locking: str, *args: object) -> list[asyncpg.Record]:
    """Lock keys with the query ``locking`` and store them rewrapped, in one transaction."""
    master = keyring.master_key()
    async with conn.transaction():
        rows = await conn.fetch(_Q[locking], *args)
        if rows:
            await conn.execute(
                _Q["rewrap_keys"],
                [r["job_id"] for r in rows],
                [
                    master.rewrap(bytes(r["wrapped_key"]), r["job_id"], r["master_key_id"])
                    for r in rows
                ],
                master.key_id,
            )
    return list(rows)
