"""The application registry of ``bench/e2e.py``: a ``noop`` job type (``JOBTRAIL_APP``).

JOBTRAIL_APP=bench.e2e_app:registry jobtrail serve ...
"""

from __future__ import annotations

from typing import Annotated

import pydantic

import jobstore
from jobstore import BaseJob

NOOP = "noop"
PERSONAL = "noop-personal"


class NoopPayload(pydantic.BaseModel):
    """Nothing to do: an empty payload (unknown fields are refused)."""

    model_config = pydantic.ConfigDict(extra="forbid")


class PersonalPayload(pydantic.BaseModel):
    """One personal field (sealed in the log with the job's own key), nothing to do."""

    model_config = pydantic.ConfigDict(extra="forbid")
    email: Annotated[str, jobstore.Personal]


async def personal_handler(payload: PersonalPayload, job: BaseJob) -> None:
    """Do nothing with the revealed field: the benchmark prices sealing and revealing."""
    return None


async def noop_handler(payload: NoopPayload, job: BaseJob) -> None:
    """Do nothing, at once: the benchmark measures the machinery around the handler."""
    return None


def registry(settings: jobstore.Settings | None = None) -> jobstore.JobRegistry:
    """The built-in types plus ``noop`` and ``noop-personal`` (3 retries, 30 s timeout)."""
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
    reg.register(
        jobstore.JobConfig(
            type=PERSONAL,
            endpoint="/jobs/noop-personal",
            retries=3,
            timeout=30,
            description="Do nothing with one personal field (benchmark)",
        ),
        PersonalPayload,
        personal_handler,
    )
    return reg
