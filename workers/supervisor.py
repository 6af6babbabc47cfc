"""A host's background tasks, kept running: one that dies is restarted, and everyone can see it.

Each task (relay, notifier, sweeper, projections, and any extra ones) runs in a loop: when
it raises (or returns: background tasks run until cancelled) its error is logged and
kept, and it starts again after a delay from :class:`jobstore.RetryPolicy` (exponential,
capped, jittered; back to the first delay once a run lasted ``stable_after`` seconds).
Nothing stops a task for good but the host's own shutdown.

Its state (running; restarting since when, after which error; stopped) is what
``/readyz`` (not ready while a required task is down), ``/metrics``
(``jobtrail_background_task_up``, ``jobtrail_background_task_restarts_total``) and the
``jobtrail projections status`` / ``jobtrail relay status`` commands report.  The commands
run elsewhere, so the host writes its report to ``jobtrail.host_tasks`` whenever a state
changes and every ``report_interval`` seconds; a report that fails (the database is the
usual reason a task is down) is simply written on the next occasion.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import structlog

from jobstore import RetryPolicy, errors, query
from workers.metrics import Metrics

log = structlog.get_logger("jobtrail.supervisor")
_Q = query.load("workers", "supervisor.sql")

TaskRun = Callable[[], Awaitable[None]]
"""Starts one run of a task (a fresh one after each failure)."""
Detail = Callable[[], Mapping[str, Any]]
"""More about a task for its report (e.g. the relay's QStash throttling)."""
State = Literal["running", "restarting", "stopped"]
REPORT_INTERVAL = 10.0
"""Seconds between a host's reports on its tasks (and at once on every change)."""
FORGET_AFTER_SECONDS = 7 * 86400
"""Reports of hosts silent for this long are deleted."""


@dataclass
class TaskState:
    """One background task's state, as reported."""

    name: str
    required: bool
    state: State = "running"
    since: float = field(default_factory=time.time)
    last_error: str | None = None
    restarts: int = 0
    retry_at: float | None = None
    detail: Detail | None = None

    @property
    def up(self) -> bool:
        """Whether the task is running now."""
        return self.state == "running"

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-compatible values (times as ISO 8601, UTC)."""
        return {
            "task": self.name,
            "required": self.required,
            "state": self.state,
            "since": _iso(self.since),
            "last_error": self.last_error,
            "restarts": self.restarts,
            "retry_at": None if self.retry_at is None else _iso(self.retry_at),
            "detail": dict(self.detail()) if self.detail is not None else {},
        }


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """How tasks are restarted and reported."""

    restart: RetryPolicy = field(default_factory=lambda: RetryPolicy(first=0.5, cap=30.0))
    stable_after: float = 60.0
    """A run that lasted this long resets the restart delay to its first value."""
    report_interval: float = REPORT_INTERVAL


class Supervisor:
    """Starts, restarts, reports and finally stops a host's background tasks."""

    def __init__(
        self,
        metrics: Metrics,
        pool: asyncpg.Pool | None = None,
        config: SupervisorConfig | None = None,
        *,
        host: str | None = None,
    ) -> None:
        self.metrics = metrics
        self.pool = pool
        self.config = config or SupervisorConfig()
        self.host = host or f"{socket.gethostname()}:{os.getpid()}"
        self.states: dict[str, TaskState] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    def start(
        self, name: str, run: TaskRun, *, required: bool = True, detail: Detail | None = None
    ) -> None:
        """Run ``run()`` as task ``name`` until :meth:`stop`, restarting it whenever it ends."""
        if name in self.states:
            raise ValueError(f"a background task named {name!r} already runs; pick another name")
        state = TaskState(name, required, detail=detail)
        self.states[name] = state
        self.metrics.task_up.labels(name).set(1)
        self.metrics.task_restarts.labels(name)  # shown at 0 from the start
        self._tasks.append(asyncio.create_task(self._keep(state, run), name=name))

    def start_reporting(self) -> None:
        """Write the tasks' states to the database now and then (needs ``pool``)."""
        if self.pool is not None:
            self._tasks.append(asyncio.create_task(self._report_loop(), name="task reports"))

    def down(self, *, required: bool = True) -> list[TaskState]:
        """The required tasks (or, with ``required=False``, the others) not running now."""
        return [s for s in self.states.values() if s.required is required and not s.up]

    async def stop(self, wait: float) -> list[str]:
        """Cancel every task and wait up to ``wait`` s; the names of those still running."""
        for task in self._tasks:
            task.cancel()
        if not self._tasks:
            return []
        _done, stuck = await asyncio.wait(self._tasks, timeout=wait)
        for state in self.states.values():
            self._set(state, "stopped")
        if self.pool is not None:
            with contextlib.suppress(Exception):  # best effort: the pool may be gone too
                await asyncio.wait_for(self._report(), 2)
        return [t.get_name() for t in stuck]

    async def _keep(self, state: TaskState, run: TaskRun) -> None:
        loop = asyncio.get_running_loop()
        delays = self.config.restart.delays()
        while True:
            began = loop.time()
            try:
                await run()
                error = "the task returned; background tasks run until the host stops"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:2000]
                if errors.is_transient(exc) or isinstance(exc, errors.MisconfiguredError):
                    # the database went away, or the message says what to set: no traceback
                    log.error("background task failed; restarting it", task=state.name, error=error)
                else:
                    log.error(
                        "background task failed; restarting it", task=state.name, exc_info=exc
                    )
            if loop.time() - began >= self.config.stable_after:
                delays.reset()
            delay = delays.next()
            state.last_error = error
            state.restarts += 1
            state.retry_at = time.time() + delay
            self._set(state, "restarting")
            self.metrics.task_restarts.labels(state.name).inc()
            await asyncio.sleep(delay)
            state.retry_at = None
            self._set(state, "running")
            log.info("background task restarted", task=state.name, restarts=state.restarts)

    def _set(self, state: TaskState, new: State) -> None:
        state.state, state.since = new, time.time()
        self.metrics.task_up.labels(state.name).set(1 if new == "running" else 0)
        self._changed.set()

    async def _report_loop(self) -> None:
        await self._forget_old()
        while True:
            try:
                await self._report()
            except Exception as exc:  # the database may be what is down: next time
                log.debug("task report not written", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.config.report_interval)
            self._changed.clear()

    async def _report(self) -> None:
        assert self.pool is not None
        rows = [s.to_json() for s in self.states.values()]
        await self.pool.execute(
            _Q["report_tasks"],
            self.host,
            [r["task"] for r in rows],
            [r["required"] for r in rows],
            [r["state"] for r in rows],
            [datetime.fromtimestamp(s.since, UTC) for s in self.states.values()],
            [r["last_error"] for r in rows],
            [r["restarts"] for r in rows],
            [{**r["detail"], "retry_at": r["retry_at"]} for r in rows],
            timeout=5,
        )

    async def _forget_old(self) -> None:
        with contextlib.suppress(Exception):
            assert self.pool is not None
            await self.pool.execute(_Q["forget_old_reports"], float(FORGET_AFTER_SECONDS))


@dataclass(frozen=True, slots=True)
class TaskReport:
    """A host's last report on one of its tasks, as read back from the database."""

    host: str
    task: str
    required: bool
    state: State
    since: datetime
    last_error: str | None
    restarts: int
    detail: Mapping[str, Any]
    silent_seconds: float

    def stale(self, report_interval: float = REPORT_INTERVAL) -> bool:
        """Whether the host has not reported for several intervals (stopped or gone)."""
        return self.state != "stopped" and self.silent_seconds > 3 * report_interval

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-compatible values."""
        return {
            "host": self.host,
            "task": self.task,
            "required": self.required,
            "state": self.state,
            "since": self.since.isoformat(),
            "last_error": self.last_error,
            "restarts": self.restarts,
            "detail": dict(self.detail),
            "seconds_since_report": round(self.silent_seconds, 1),
            "stale": self.stale(),
        }

    def describe(self) -> str:
        """One line for people: the state, since when, and the last error if any."""
        since = self.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        text = f"{self.state} since {since}"
        if self.restarts:
            text += f", {self.restarts} restart(s)"
        if self.state == "restarting" and self.last_error:
            text += f"; last error: {self.last_error[:200]}"
        if self.stale():
            text += f" (no report for {self.silent_seconds:.0f} s: host gone?)"
        return text


async def task_reports(pool: asyncpg.Pool, tasks: list[str] | None = None) -> list[TaskReport]:
    """Every host's last report on ``tasks`` (all tasks when None)."""
    rows = await pool.fetch(_Q["task_reports"], tasks)
    return [
        TaskReport(
            host=row["host"],
            task=row["task"],
            required=row["required"],
            state=row["state"],
            since=row["since"],
            last_error=row["last_error"],
            restarts=row["restarts"],
            detail=row["detail"],
            silent_seconds=row["silent_seconds"],
        )
        for row in rows
    ]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
