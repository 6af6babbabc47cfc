"""Bulk replay: dispatch again every failed (or never-completed cancelled) job a filter selects.

The views choose the jobs; each replay goes through ``Dispatcher.replay_job``, which
decides on the job's own stream (always current), so a job the views show as failed but
that meanwhile moved on is skipped with its reason rather than replayed twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from jobstore import Dispatcher, JobError
from projections import cursor as keyset
from projections import reader
from projections.filter import JobFilter

log = structlog.get_logger("jobtrail.projections")
PAGE: Final = 500

Progress = Callable[[int, int], None]
"""Called after each job with (jobs handled so far, jobs selected)."""


class CountMismatchError(Exception):
    """A bulk replay's confirmed count is not (or no longer) the count of jobs it selects."""

    def __init__(self, count: int, expected: int | None) -> None:
        super().__init__(
            f"{count} job(s) match; expected_count {expected} does not"
            if expected is not None
            else f"{count} job(s) match; send expected_count: {count} to replay them"
        )
        self.count, self.expected = count, expected


@dataclass(slots=True)
class ReplayOutcome:
    """What a bulk replay did: jobs selected, replayed (with positions), skipped and why."""

    selected: int = 0
    replayed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    position: int = 0

    @property
    def count(self) -> int:
        """How many jobs were replayed."""
        return len(self.replayed)

    def to_json(self) -> dict[str, Any]:
        """The outcome as JSON-compatible values."""
        return {
            "selected": self.selected,
            "replayed": self.count,
            "replayed_job_ids": self.replayed,
            "skipped": [{"job_id": j, "reason": r} for j, r in self.skipped.items()],
            "position": self.position,
        }


async def replay_jobs(
    pool: reader.Source,
    dispatcher: Dispatcher,
    job_filter: JobFilter | None = None,
    *,
    reason: str | None = None,
    progress: Progress | None = None,
    concurrency: int = 8,
    actor: str | None = None,
    expected_count: int | None = None,
) -> ReplayOutcome:
    """Replay the failed and cancelled-never-completed jobs ``job_filter`` selects.

    A filter is required (an empty one is refused).  With ``expected_count`` (the count
    the operator confirmed) a different count is CountMismatchError and nothing is
    replayed.  ``outcome.position`` is the last replay's log position: pass it to
    ``wait_for_position`` to see the jobs pending again in the views.
    """
    job_filter = check_filter(job_filter)
    selected = await count_replayable(pool, job_filter)
    if expected_count is not None and expected_count != selected:
        raise CountMismatchError(selected, expected_count)
    outcome = ReplayOutcome(selected=selected)
    replayer = _Replayer(
        dispatcher, reason, actor, outcome, progress, asyncio.Semaphore(concurrency)
    )
    after: keyset.Position | None = None
    while rows := await reader.select_jobs(
        pool, job_filter, replayable_only=True, after=after, limit=PAGE
    ):
        await asyncio.gather(*(replayer.replay(row.job_id) for row in rows))
        after = keyset.Position(rows[-1].created_at, rows[-1].job_id)
    log.info("bulk replay done", replayed=outcome.count, skipped=len(outcome.skipped))
    return outcome


async def count_replayable(pool: reader.Source, job_filter: JobFilter | None) -> int:
    """How many jobs a bulk replay of ``job_filter`` would select (the filter checked)."""
    return await reader.count_jobs(pool, check_filter(job_filter), replayable_only=True)


def check_filter(job_filter: JobFilter | None) -> JobFilter:
    """``job_filter`` if a bulk replay may use it: not empty, replayable statuses only."""
    return (job_filter or JobFilter()).for_replay()


@dataclass(slots=True)
class _Replayer:
    dispatcher: Dispatcher
    reason: str | None
    actor: str | None
    outcome: ReplayOutcome
    progress: Progress | None
    gate: asyncio.Semaphore

    async def replay(self, job_id: str) -> None:
        async with self.gate:
            try:
                position = await self.dispatcher.replay_job(job_id, self.reason, actor=self.actor)
            except JobError as exc:
                self.outcome.skipped[job_id] = f"{exc.code}: {exc.message}"
            else:
                self.outcome.replayed.append(job_id)
                self.outcome.position = max(self.outcome.position, position)
        if self.progress is not None:
            done = self.outcome.count + len(self.outcome.skipped)
            self.progress(done, max(done, self.outcome.selected))
