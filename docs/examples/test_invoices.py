"""Testing an application's job type with jobtrail's pytest plugin (see docs/how-to/testing.md)."""

from __future__ import annotations

import invoices
import pytest

import jobstore
from workers.testing import JobTrailKit

pytestmark = pytest.mark.asyncio


@pytest.fixture
def jobtrail_registry(jobtrail_settings: jobstore.Settings) -> jobstore.JobRegistry:
    """The job types under test: the application's own registry."""
    return invoices.registry(jobtrail_settings)


async def test_an_invoice_is_charged_once(jobtrail: JobTrailKit) -> None:
    job_id = await jobtrail.dispatcher.enqueue(
        "charge-invoice", {"invoice_id": 7, "amount_cents": 1250}
    )
    state = await jobtrail.assert_completed(job_id)
    assert state.result == {"charged": 7}
    await jobtrail.assert_history(job_id, "job.dispatched", "job.started", "job.completed")
    assert list(invoices.CHARGES.values()).count(1250) == 1


async def test_a_bad_amount_fails_at_once_without_retries(jobtrail: JobTrailKit) -> None:
    job_id = await jobtrail.dispatcher.enqueue(
        "charge-invoice", {"invoice_id": 8, "amount_cents": 0}
    )
    await jobtrail.assert_failed(job_id, error_contains="amount_cents must be positive")
    await jobtrail.assert_history(
        job_id, "job.dispatched", "job.started", "job.attempt_failed", "job.failed"
    )


async def test_a_payload_the_model_refuses_is_never_recorded(jobtrail: JobTrailKit) -> None:
    with pytest.raises(jobstore.JobValidationError):
        await jobtrail.dispatcher.enqueue("charge-invoice", {"invoice_id": "seven"})
