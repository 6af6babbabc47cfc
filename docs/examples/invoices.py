"""An application's own job type, as docs/how-to/testing.md tests it: charge an invoice."""

from __future__ import annotations

import pydantic

import jobstore

CHARGES: dict[str, int] = {}
"""Stands in for a payment provider: amounts charged, by idempotency key."""


class InvoicePayload(pydantic.BaseModel):
    """What a charge-invoice job carries."""

    invoice_id: int
    amount_cents: int


async def charge(payload: InvoicePayload, job: jobstore.BaseJob) -> dict[str, int]:
    """Charge the invoice once per dispatch, however often this attempt is retried."""
    if payload.amount_cents <= 0:
        raise jobstore.NonRetryableJobError(
            f"amount_cents must be positive, got {payload.amount_cents}"
        )
    CHARGES.setdefault(job.idempotency_key, payload.amount_cents)  # keyed: safe under retries
    return {"charged": payload.invoice_id}


def registry(settings: jobstore.Settings) -> jobstore.JobRegistry:
    """The application's job types: the built-in ones plus charge-invoice."""
    reg = jobstore.default_registry()
    config = jobstore.JobConfig(
        type="charge-invoice", endpoint="/jobs/charge", retries=2, timeout=20
    )
    reg.register(config, InvoicePayload, charge)
    return reg
