"""The sweeper: nothing stays pending, processing or retrying forever (DESIGN.md rule 6).

For each published dispatch of an unfinished job with no live lease (and each job of a
scheduled run that stopped moving, found through the views), it asks QStash, not
the clock: still pending or retrying, it waits; failed or in the DLQ, it records
``JobFailed``; unknown to QStash (lost, e.g. a restarted qstash_local), it records the next
``JobDispatched(source=recovery)``, which the relay publishes.  Dispatches the relay has
not published yet are the relay's business, not the sweeper's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from qstash import AsyncQStash
from qstash.errors import QStashError

from jobstore import change, query
from workers import decision
from workers.context import HostContext

log = structlog.get_logger("jobtrail.sweeper")
_Q = query.load("workers", "sweeper.sql")
_PENDING_STATES = {"CREATED", "ACTIVE", "RETRY", "ERROR", "IN_PROGRESS"}
_FAILED_STATES = {"FAILED"}


@dataclass(frozen=True)
class SweeperConfig:
    """How often and how far back the sweeper looks."""

    interval: float = 30.0
    min_age: float = 60.0
    horizon: float = 8 * 86400.0
    batch: int = 200


class Sweeper:
    """Brings stuck dispatches to an end, each with its reason."""

    def __init__(self, ctx: HostContext, config: SweeperConfig | None = None) -> None:
        self.ctx = ctx
        self.config = config or SweeperConfig()

    async def run(self) -> None:
        """Sweep every ``interval`` seconds, forever."""
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:  # QStash or the database away: the next sweep retries
                log.warning(
                    "sweep failed; trying again later",
                    error=str(exc)[:300],
                    error_type=type(exc).__name__,
                )
            await asyncio.sleep(self.config.interval)

    async def sweep_once(self) -> int:
        """One pass; returns how many dispatches it settled."""
        assert self.ctx.qstash is not None, "the sweeper needs a QStash client"
        pool = self.ctx.store.pool
        rows = [
            *await pool.fetch(
                _Q["candidates"], self.config.min_age, self.config.horizon, self.config.batch
            ),
            *await pool.fetch(_Q["scheduled_candidates"], self.config.min_age, self.config.batch),
        ]
        settled = 0
        for row in rows:
            settled += await self._settle(
                self.ctx.qstash, row["job_id"], row["dispatch"], row["message_id"]
            )
        if settled:
            log.info("sweep settled dispatches", count=settled)
        pruned = await self.ctx.store.prune_delivery_tokens()
        if pruned:
            log.debug("expired delivery tokens forgotten", count=pruned)
        return settled

    async def _settle(
        self, qstash: AsyncQStash, job_id: str, dispatch: int, message_id: str
    ) -> int:
        state = await change.load(self.ctx.store, job_id)
        if state is None or state.finished or state.dispatch != dispatch:
            return 0
        if state.lease_until is not None and state.lease_until > time.time():
            return 0
        where = await qstash_state(qstash, message_id)
        if where == "unknown" and await self.ctx.store.keys.erased(job_id):
            where = "failed"  # lost, and erased: a recovery could not run it (refused as ERASED)
        # Decided again on any newer state: a start, an outcome or a cancel recorded while
        # QStash was asked makes the sweep record nothing.
        changed = await change.change(
            self.ctx.store,
            job_id,
            lambda s: (decision.decide_sweep(s, dispatch, where, time.time()), None),
            known=state,
        )
        if changed is None or not changed.events:
            return 0
        events = changed.events
        log.warning(
            "sweeper settled a dispatch",
            job_id=job_id,
            dispatch=dispatch,
            qstash=where,
            recorded=[e.type_name for e in events],
        )
        return 1


async def qstash_state(qstash: AsyncQStash, message_id: str) -> str:
    """``pending``, ``failed`` or ``unknown``: what QStash knows of a message."""
    logs = await qstash.log.list(filter={"message_id": message_id})
    states = [entry.state.value for entry in logs.logs]  # newest first
    if states:
        newest = states[0]
        if newest in _FAILED_STATES:
            return "failed"
        if newest in _PENDING_STATES:
            return "pending"
    try:
        await qstash.message.get(message_id)
    except QStashError:
        pass
    else:
        return "pending"
    dlq = await qstash.dlq.list(filter={"message_id": message_id})
    if dlq.messages:
        return "failed"
    return "unknown"
