"""An application registry for ``jobtrail serve`` subprocess tests (``JOBTRAIL_APP``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pydantic
import structlog

import jobstore
from jobstore import BaseJob


class SlowPayload(pydantic.BaseModel):
    """Sleep this long, touching a marker file first so the test knows it started."""

    seconds: float = 1.0
    marker: str = ""


async def slow_handler(payload: SlowPayload, job: BaseJob) -> dict[str, object]:
    """Run for ``seconds``; write ``marker`` (with the attempt) when starting."""
    if payload.marker:
        await asyncio.to_thread(_append_line, Path(payload.marker), f"{job.dispatch}:{job.attempt}")
    structlog.get_logger("slow_handler").info("slow handler running", seconds=payload.seconds)
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds, "attempt": job.attempt}


def _append_line(path: Path, line: str) -> None:
    with path.open("a") as marker:
        marker.write(line + "\n")


def registry(settings: jobstore.Settings) -> jobstore.JobRegistry:
    """The built-in types plus ``slow-job`` (timeout 3 s, 10 retries)."""
    reg = jobstore.default_registry()
    reg.register(
        jobstore.JobConfig(type="slow-job", endpoint="/jobs/slow", retries=10, timeout=3),
        SlowPayload,
        slow_handler,
    )
    return reg


def with_test_job(settings: jobstore.Settings) -> jobstore.JobRegistry:
    """The built-in types plus ``test-job`` of ``tests.host_support`` (for CLI subprocesses)."""
    from tests.host_support import TestHandler, test_registry

    return test_registry(TestHandler(), settings)
