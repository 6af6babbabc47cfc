"""The producer of a fault-injection run: a seeded plan of jobs, enqueued at a steady pace.

Jobs are plain, failing a few times, doomed (failing every attempt, so there is something
to replay), delayed, or carry an idempotency key that later requests repeat.  An enqueue
that fails (PostgreSQL restarting) is sent again, the same request, until it is accepted;
only accepted enqueues count as promises the system must keep.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import jobstore
from jobstore import Dispatcher, JobRequest
from tests.chaos import app
from tests.chaos.checker import KeyUse

BATCH: Final = 20
"""Requests without options sent together through ``enqueue_many``."""
GIVE_UP_AFTER_S: Final = 120.0
"""How long one enqueue is retried before the run fails."""


@dataclass(frozen=True)
class Planned:
    """One enqueue request of the plan."""

    tag: str
    payload: dict[str, Any]
    options: dict[str, Any] | None = None
    key: str | None = None

    @property
    def batchable(self) -> bool:
        """Whether it may go in an ``enqueue_many`` batch: no options (a key may repeat
        within a batch: the first request of it wins, as across calls)."""
        return self.options is None

    def request(self) -> JobRequest:
        """The dispatcher's request for it."""
        metadata = {"idempotency_key": self.key} if self.key else None
        return JobRequest(app.JOB_TYPE, self.payload, metadata, self.options)


def plan(rng: random.Random, jobs: int) -> list[Planned]:
    """``jobs`` requests in the order they are sent (a key's first request comes first)."""
    keys = [f"key-{n}" for n in range(max(1, jobs // 30))]
    out: list[Planned] = []
    for n in range(jobs):
        tag = f"job-{n}"
        sleep = rng.choice([0.0, 0.0, 0.0, 0.05, 0.2, 0.5])
        roll = rng.random()
        if roll < 0.15:
            payload = {"tag": tag, "sleep": sleep, "fail_times": rng.randint(1, 3)}
            out.append(Planned(tag, payload))
        elif roll < 0.18:
            out.append(Planned(tag, {"tag": tag, "fail_times": 99}))
        elif roll < 0.33:
            delay = round(rng.uniform(0.5, 4.0), 3)
            out.append(Planned(tag, {"tag": tag, "sleep": sleep}, {"delay": delay}))
        elif roll < 0.43:
            out.append(Planned(tag, {"tag": tag, "sleep": sleep}, key=rng.choice(keys)))
        else:
            out.append(Planned(tag, {"tag": tag, "sleep": sleep}))
    return out


@dataclass
class Producer:
    """Enqueues a plan through the dispatcher, remembering what was accepted."""

    dispatcher: Dispatcher
    accepted: set[str] = field(default_factory=set)
    order: list[str] = field(default_factory=list)
    """The accepted job ids in the order they were first returned."""
    key_ids: dict[str, list[str]] = field(default_factory=dict)
    first_tags: dict[str, str] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    """Failed enqueue calls (each sent again), by error type."""
    unclassified: Counter[str] = field(default_factory=Counter)
    """Of those, errors other than DatabaseUnavailableError: a caller cannot tell that
    trying again is right (a driver error let through, or a generic store error)."""
    requests: int = 0
    sent: int = 0

    def keys(self) -> dict[str, KeyUse]:
        """Every idempotency key used, for the checker."""
        return {k: KeyUse(self.first_tags[k], tuple(ids)) for k, ids in self.key_ids.items()}

    async def run(self, planned: Sequence[Planned], duration: float) -> None:
        """Send ``planned`` evenly over ``duration`` seconds."""
        started = time.monotonic()
        while self.sent < len(planned):
            elapsed = time.monotonic() - started
            due = min(len(planned), int(len(planned) * elapsed / duration) + 1)
            while self.sent < due:
                await self._send_next(planned)
            await asyncio.sleep(0.02)

    async def _send_next(self, planned: Sequence[Planned]) -> None:
        first = planned[self.sent]
        if not first.batchable:
            job_id = await self._retrying(lambda: self.dispatcher.enqueue(*_args(first)))
            self._accept(first, job_id)
            self.sent += 1
            return
        batch = [first]
        for more in planned[self.sent + 1 : self.sent + BATCH]:
            if not more.batchable:
                break
            batch.append(more)
        requests = [p.request() for p in batch]
        ids = await self._retrying(lambda: self.dispatcher.enqueue_many(requests))
        for item, job_id in zip(batch, ids, strict=True):
            self._accept(item, job_id)
        self.sent += len(batch)

    def _accept(self, item: Planned, job_id: str) -> None:
        if job_id not in self.accepted:
            self.accepted.add(job_id)
            self.order.append(job_id)
        if item.key is not None:
            self.first_tags.setdefault(item.key, item.tag)
            self.key_ids.setdefault(item.key, []).append(job_id)

    async def _retrying(self, call: Callable[[], Any]) -> Any:
        """``call()`` until it is accepted; a validation error is the plan's bug, raised."""
        deadline = time.monotonic() + GIVE_UP_AFTER_S
        while True:
            self.requests += 1
            try:
                return await call()
            except jobstore.JobValidationError:
                raise
            except Exception as exc:
                self.errors[type(exc).__name__] += 1
                if not isinstance(exc, jobstore.DatabaseUnavailableError):
                    self.unclassified[f"{type(exc).__name__}: {exc}"[:160]] += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


def _args(item: Planned) -> tuple[Any, ...]:
    request = item.request()
    return (request.type, request.payload, request.metadata, request.options)
