"""The application the chaos run's host serves: one ``chaos-job`` type (``JOBTRAIL_APP``).

JOBTRAIL_APP=tests.chaos.app:registry JOBTRAIL_CHAOS_RUNS=/tmp/runs.txt jobtrail serve ...

Its handler appends ``<job_id> <dispatch> <attempt>`` to the runs file (set by
``JOBTRAIL_CHAOS_RUNS``) before doing anything else, so the run can prove that no recorded
attempt ran its handler twice; then it sleeps a little (so a kill can land mid-attempt)
and fails its first ``fail_times`` attempts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Final

import pydantic

import jobstore
from jobstore import BaseJob

JOB_TYPE: Final = "chaos-job"
ENDPOINT: Final = "/jobs/chaos"
RETRIES: Final = 5
TIMEOUT_S: Final = 2.0
RUNS_VARIABLE: Final = "JOBTRAIL_CHAOS_RUNS"


class ChaosPayload(pydantic.BaseModel):
    """What one chaos job does: sleep, then fail its first ``fail_times`` attempts."""

    model_config = pydantic.ConfigDict(extra="forbid")

    tag: str
    sleep: float = pydantic.Field(default=0.0, ge=0, le=1.0)
    fail_times: int = pydantic.Field(default=0, ge=0)


class RunLog:
    """Appends one line per handler run to a file (O_APPEND: whole lines, any process)."""

    def __init__(self, path: str | None) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None

    def write(self, job: BaseJob) -> None:
        """Record that ``job``'s attempt is running (blocks: call it in a thread)."""
        if self._fd is not None:
            os.write(self._fd, f"{job.job_id} {job.dispatch} {job.attempt}\n".encode())


def handler_for(runs: RunLog) -> Callable[..., Awaitable[dict[str, object]]]:
    """The ``chaos-job`` handler, recording its runs in ``runs``."""

    async def chaos_handler(payload: ChaosPayload, job: BaseJob) -> dict[str, object]:
        await asyncio.to_thread(runs.write, job)
        if payload.sleep:
            await asyncio.sleep(payload.sleep)
        if job.attempt <= payload.fail_times:
            raise RuntimeError(f"planned failure of attempt {job.attempt} of {payload.tag}")
        return {"tag": payload.tag, "attempt": job.attempt}

    return chaos_handler


def registry(settings: jobstore.Settings | None = None) -> jobstore.JobRegistry:
    """The built-in types plus ``chaos-job`` (5 retries 0.5 s apart, 2 s timeout)."""
    reg = jobstore.default_registry()
    reg.register(
        jobstore.JobConfig(
            type=JOB_TYPE,
            endpoint=ENDPOINT,
            retries=RETRIES,
            timeout=TIMEOUT_S,
            # The host's own short backoff (Retry-After 1 s): QStash's schedule, even scaled
            # down, waits minutes before a fifth retry, longer than a short run lasts.
            backoff=jobstore.Backoff(kind="fixed", base=0.5),
            description="A job of the fault-injection run",
        ),
        ChaosPayload,
        handler_for(RunLog(os.environ.get(RUNS_VARIABLE))),
    )
    return reg
