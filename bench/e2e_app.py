"""The application registry of ``bench/e2e.py``: a ``noop`` job type (``JOBTRAIL_APP``).

JOBTRAIL_APP=bench.e2e_app:registry jobtrail serve ...
"""

from __future__ import annotations

import pydantic

import jobstore
from jobstore import BaseJob

NOOP = "noop"


class NoopPayload(pydantic.BaseModel):
    """Nothing to do: an empty payload (unknown fields are refused)."""

    model_config = pydantic.ConfigDict(extra="forbid")


async def noop_handler(payload: NoopPayload, job: BaseJob) -> None:
    """Do nothing, at once: the benchmark measures the machinery around the handler."""
    return None


def registry(settings: jobstore.Settings | None = None) -> jobstore.JobRegistry:
    """The built-in types plus ``noop`` (endpoint ``/jobs/noop``, 3 retries, 30 s timeout)."""
    reg = jobstore.default_registry()
    reg.register(
        jobstore.JobConfig(
            type=NOOP,
            endpoint="/jobs/noop",
            retries=3,
            timeout=30,
            description="Do nothing (benchmark)",
        ),
        NoopPayload,
        noop_handler,
    )
    return reg
