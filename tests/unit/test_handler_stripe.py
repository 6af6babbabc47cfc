"""process-stripe-webhook: Stripe's signature scheme checked, events routed by type."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from pydantic import SecretStr

from jobstore import BaseJob, BaseJobMetadata, NonRetryableJobError, Settings, payloads
from workers import handlers

SECRET = "whsec_test_secret"
JOB = BaseJob(job_id="job-1", type="process-stripe-webhook", payload={}, metadata=BaseJobMetadata())


def stripe_event(event_type: str = "invoice.paid") -> str:
    return json.dumps(
        {
            "id": "evt_123",
            "object": "event",
            "type": event_type,
            "data": {"object": {"id": "in_456", "amount_paid": 1999}},
        }
    )


def sign(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    """Stripe's documented scheme: t=<ts>,v1=<hex HMAC-SHA256(secret, f"{t}.{payload}")>."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def delivery(payload: str, signature: str) -> payloads.ProcessStripeWebhookPayload:
    return payloads.ProcessStripeWebhookPayload(payload=payload, signature=signature)


def settings(secret: str | None = SECRET) -> Settings:
    return Settings(stripe_webhook_secret=SecretStr(secret) if secret else None)


async def test_verified_event_reaches_its_route_with_the_parsed_event() -> None:
    router = handlers.StripeRouter()
    seen: list[tuple[dict[str, Any], BaseJob]] = []

    @router.on("invoice.paid")
    async def invoice_paid(event: dict[str, Any], job: BaseJob) -> dict[str, Any]:
        seen.append((event, job))
        return {"invoice": event["data"]["object"]["id"]}

    handle = handlers.stripe_webhook_handler(settings(), router)
    payload = stripe_event()

    result = await handle(delivery(payload, sign(payload)), JOB)

    assert result == {
        "event_type": "invoice.paid",
        "event_id": "evt_123",
        "routed": True,
        "result": {"invoice": "in_456"},
    }
    assert seen == [(json.loads(payload), JOB)]


async def test_event_type_without_a_route_is_acknowledged() -> None:
    router = handlers.StripeRouter()
    called: list[str] = []

    async def invoice_paid(event: dict[str, Any], job: BaseJob) -> None:
        called.append(event["type"])

    router.register("invoice.paid", invoice_paid)
    handle = handlers.stripe_webhook_handler(settings(), router)
    payload = stripe_event("customer.created")

    result = await handle(delivery(payload, sign(payload)), JOB)

    assert result == {"event_type": "customer.created", "event_id": "evt_123", "routed": False}
    assert called == []


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("tampered payload", lambda p: delivery(p.replace("1999", "1"), sign(p))),
        ("wrong secret", lambda p: delivery(p, sign(p, secret="whsec_other"))),
        ("too old", lambda p: delivery(p, sign(p, timestamp=int(time.time()) - 301))),
        ("not a signature", lambda p: delivery(p, "garbage")),
        ("other scheme only", lambda p: delivery(p, sign(p).replace("v1=", "v0="))),
    ],
)
async def test_bad_signatures_fail_without_retry_and_route_nothing(case: str, make: Any) -> None:
    router = handlers.StripeRouter()
    called: list[str] = []

    @router.on("invoice.paid")
    async def invoice_paid(event: dict[str, Any], job: BaseJob) -> None:
        called.append(case)

    handle = handlers.stripe_webhook_handler(settings(), router)

    with pytest.raises(NonRetryableJobError, match="Stripe-Signature check failed"):
        await handle(make(stripe_event()), JOB)
    assert called == []


async def test_missing_secret_fails_with_the_setting_to_fix() -> None:
    handle = handlers.stripe_webhook_handler(settings(secret=None), handlers.StripeRouter())
    payload = stripe_event()

    with pytest.raises(NonRetryableJobError, match="STRIPE_WEBHOOK_SECRET is not set"):
        await handle(delivery(payload, sign(payload)), JOB)


async def test_signed_payload_that_is_not_an_event_fails_without_retry() -> None:
    handle = handlers.stripe_webhook_handler(settings(), handlers.StripeRouter())
    payload = json.dumps(["not", "an", "event"])

    with pytest.raises(NonRetryableJobError, match='string "type"'):
        await handle(delivery(payload, sign(payload)), JOB)


async def test_route_failure_propagates_so_the_attempt_is_retried() -> None:
    router = handlers.StripeRouter()

    @router.on("invoice.paid")
    async def invoice_paid(event: dict[str, Any], job: BaseJob) -> None:
        raise ConnectionError("ledger unavailable")

    handle = handlers.stripe_webhook_handler(settings(), router)
    payload = stripe_event()

    with pytest.raises(ConnectionError, match="ledger unavailable"):
        await handle(delivery(payload, sign(payload)), JOB)


def test_router_refuses_a_second_route_for_one_type_and_sync_functions() -> None:
    router = handlers.StripeRouter()

    async def first(event: dict[str, Any], job: BaseJob) -> None:
        return None

    def not_async(event: dict[str, Any], job: BaseJob) -> None:
        return None

    router.register("charge.refunded", first)
    with pytest.raises(ValueError, match=r"'charge\.refunded' already has a route"):
        router.register("charge.refunded", first)
    with pytest.raises(TypeError, match="must be an async function"):
        router.register("charge.failed", not_async)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        router.register("", first)
    assert router.event_types == ["charge.refunded"]
