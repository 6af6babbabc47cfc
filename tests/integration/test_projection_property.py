"""Properties: for any sequence of job events (archiving included), the views built
incrementally in any batch sizes equal a full rebuild, hold the state the host's fold of
the job's stream gives (the one job model), and their stats equal counting the rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jobstore
import projections
from jobstore import job_events, job_state
from projections import execution
from tests import pg
from tests.projection_support import archive, counted_stats, snapshot

JOBS = st.integers(min_value=0, max_value=4)
SMALL = st.integers(min_value=1, max_value=3)
TEXT = st.text(alphabet="abxyz %_'\\é", max_size=10)
SCALARS = st.one_of(st.integers(-1000, 1000), TEXT, st.booleans(), st.none())
DURATIONS = st.one_of(
    st.sampled_from([0.0, 0.0005, 0.001, 0.3, 1.0, 42.0, 9000.0]),
    st.floats(min_value=0, max_value=10_000, allow_nan=False),
)

DISPATCHED = st.fixed_dictionaries(
    {
        "dispatch": SMALL,
        "job_type": st.sampled_from(["cleanup-old-data", "send-email", "export-data"]),
        "payload": st.dictionaries(st.sampled_from("abc"), SCALARS, max_size=3),
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "user_id": st.integers(1, 4),
                "organization_id": st.integers(1, 3),
                "schedule_id": st.sampled_from(["sch_1", "sch_2"]),
            },
        ),
        "options": st.fixed_dictionaries(
            {"retries": st.integers(0, 5)},
            optional={"timeout": st.sampled_from([2.5, 90.0]), "endpoint": st.just("/x")},
        ),
        "source": st.sampled_from(["api", "schedule", "replay", "recovery"]),
    }
)
STEP = st.one_of(
    st.tuples(st.just("dispatched"), JOBS, DISPATCHED),
    st.tuples(
        st.just("started"),
        JOBS,
        st.fixed_dictionaries(
            {
                "dispatch": SMALL,
                "attempt": SMALL,
                "message_id": st.none() | st.just("m1"),
                "lease_until": st.sampled_from([1e9, 1.5e9 + 0.25]),
            }
        ),
    ),
    st.tuples(
        st.just("completed"),
        JOBS,
        st.fixed_dictionaries(
            {"dispatch": SMALL, "attempt": SMALL, "duration_seconds": DURATIONS, "result": SCALARS}
        ),
    ),
    st.tuples(
        st.just("attempt_failed"),
        JOBS,
        st.fixed_dictionaries(
            {
                "dispatch": SMALL,
                "attempt": SMALL,
                "error_type": st.sampled_from(["ValueError", "TimeoutError"]),
                "error_message": TEXT,
                "will_retry": st.booleans(),
                "abandoned": st.booleans(),
                "duration_seconds": st.none() | DURATIONS,
            }
        ),
    ),
    st.tuples(
        st.just("failed"),
        JOBS,
        st.fixed_dictionaries(
            {
                "dispatch": SMALL,
                "attempt": st.none() | SMALL,
                "reason": TEXT,
                "error_type": st.none() | st.just("QStashFailure"),
                "error_message": st.none() | TEXT,
            }
        ),
    ),
    st.tuples(st.just("cancelled"), JOBS, st.fixed_dictionaries({"dispatch": SMALL})),
    st.tuples(st.just("archive"), st.lists(JOBS, min_size=1, max_size=3, unique=True), st.just({})),
    st.tuples(st.just("apply"), st.integers(1, 7), st.just({})),
)
SCRIPT = st.lists(STEP, min_size=1, max_size=25)

_DEFAULT_DISPATCH: dict[str, Any] = {
    "dispatch": 1,
    "job_type": "send-email",
    "payload": {"a": 1},
    "metadata": {"user_id": 2},
    "options": {"retries": 1},
}
_EVENTS: dict[str, type[jobstore.Event]] = {
    "started": job_events.JobStarted,
    "completed": job_events.JobCompleted,
    "attempt_failed": job_events.JobAttemptFailed,
    "failed": job_events.JobFailed,
    "cancelled": job_events.JobCancelled,
}


class Script:
    """Plays a generated script against the log, applying the views where it says so."""

    def __init__(self, pool: Any, dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn
        self.store = jobstore.EventStore(pool)
        self.ids = [str(uuid.uuid4()) for _ in range(5)]
        self.alive: set[int] = set()
        self.dead: set[int] = set()

    async def play(self, steps: list[tuple[str, Any, dict[str, Any]]]) -> None:
        for kind, target, fields in steps:
            if kind == "apply":
                await projections.ProjectionRunner(
                    self.pool, self.dsn, batch_size=target
                ).run_until_caught_up()
            elif kind == "archive":
                await self._archive(target)
            elif target not in self.dead:
                await self._event(kind, target, fields)

    async def _archive(self, jobs: list[int]) -> None:
        await archive(self.store, *(self.ids[j] for j in jobs))
        self.dead.update(jobs)
        self.alive.difference_update(jobs)

    async def _event(self, kind: str, job: int, fields: dict[str, Any]) -> None:
        job_id = self.ids[job]
        events: list[jobstore.Event] = []
        if job not in self.alive or kind == "dispatched":
            base = fields if kind == "dispatched" else _DEFAULT_DISPATCH
            events.append(job_events.JobDispatched(job_id=job_id, **base))
            self.alive.add(job)
        if kind != "dispatched":
            events.append(_EVENTS[kind](**fields))
        await self.store.append(f"job-{job_id}", events)

    async def check_against_fold(self) -> None:
        for job in self.alive:
            job_id = self.ids[job]
            state = job_state.fold(await self.store.read_stream(f"job-{job_id}"))
            assert state is not None
            row = await self.pool.fetchrow(
                "SELECT * FROM jobtrail.job_executions WHERE job_id = $1", job_id
            )
            assert execution.state_of(row) == state
            assert row["max_retries"] == state.max_retries
        for job in self.dead:
            assert not await self.pool.fetchval(
                "SELECT count(*) FROM jobtrail.job_executions WHERE job_id = $1", self.ids[job]
            )


async def _check(dsn: str, steps: list[Any], rebuild_batch: int) -> None:
    pool = await jobstore.create_pool(dsn, min_size=1, max_size=4)
    try:
        script = Script(pool, dsn)
        await script.play(steps)
        await projections.ProjectionRunner(pool, dsn).run_until_caught_up()
        incremental = await snapshot(pool)
        await script.check_against_fold()
        assert [tuple(r) for r in incremental["job_stats"]] == await counted_stats(pool)
        await projections.rebuild(pool, dsn, batch_size=rebuild_batch)
        assert await snapshot(pool) == incremental
    finally:
        await pool.close()


@pytest.fixture
def property_db(server_dsn: str, template_db: str) -> Iterator[str]:
    """One database for all examples; each example adds jobs of its own to the same log."""
    name = asyncio.run(pg.clone(server_dsn, template_db))
    try:
        yield pg.with_database(server_dsn, name)
    finally:
        asyncio.run(pg.drop(server_dsn, name))


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=SCRIPT, rebuild_batch=st.sampled_from([13, 5000]))
def test_incremental_views_equal_a_rebuild_and_the_fold(
    property_db: str, steps: list[Any], rebuild_batch: int
) -> None:
    asyncio.run(_check(property_db, steps, rebuild_batch))
