"""process-stripe-webhook: verify a Stripe event's signature and route it by event type.

The ``Stripe-Signature`` header is checked over the raw payload with the ``stripe``
package's own helper (``t=<unix seconds>,v1=<hex HMAC-SHA256 of f"{t}.{payload}">``,
keyed with the endpoint's signing secret, at most five minutes old).  A verified event
goes to the route registered for its ``type`` on a :class:`StripeRouter`; an event type
with no route is acknowledged.  Nothing here calls Stripe's API.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import stripe
import structlog

from jobstore import BaseJob, NonRetryableJobError, Settings, payloads

StripeEvent = dict[str, Any]
StripeRoute = Callable[[StripeEvent, BaseJob], Awaitable[dict[str, Any] | None]]
StripeWebhookHandler = Callable[
    [payloads.ProcessStripeWebhookPayload, BaseJob], Awaitable[dict[str, Any]]
]
RouteT = TypeVar("RouteT", bound=StripeRoute)

TOLERANCE_SECONDS = 300
log = structlog.get_logger(__name__)


class StripeRouter:
    """Maps Stripe event types (``invoice.paid``…) to the async functions that handle them."""

    def __init__(self) -> None:
        self._routes: dict[str, StripeRoute] = {}

    def register(self, event_type: str, route: StripeRoute) -> None:
        """Send events of ``event_type`` to ``route``, an async ``(event, job)`` function."""
        if not event_type or event_type != event_type.strip():
            raise ValueError(f"Stripe event type {event_type!r} must be a non-empty name")
        if not inspect.iscoroutinefunction(route):
            raise TypeError(
                f"route for {event_type!r} must be an async function (event, job), got {route!r}"
            )
        if event_type in self._routes:
            raise ValueError(
                f"Stripe event type {event_type!r} already has a route: "
                f"{self._routes[event_type]!r}"
            )
        self._routes[event_type] = route

    def on(self, event_type: str) -> Callable[[RouteT], RouteT]:
        """Decorator form of :meth:`register`."""

        def decorate(route: RouteT) -> RouteT:
            self.register(event_type, route)
            return route

        return decorate

    def route_for(self, event_type: str) -> StripeRoute | None:
        """The route registered for ``event_type``, or None."""
        return self._routes.get(event_type)

    @property
    def event_types(self) -> list[str]:
        """The event types that have a route, sorted."""
        return sorted(self._routes)


def verify_event(payload: str, signature: str, secret: str) -> StripeEvent:
    """The event in ``payload`` once ``signature`` proves Stripe sent it within 5 minutes."""
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise NonRetryableJobError(f"Stripe-Signature check failed: {exc}") from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise NonRetryableJobError(f"Stripe event payload is not JSON: {exc}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise NonRetryableJobError(
            'Stripe event payload must be a JSON object with a string "type", '
            f"got {type(event).__name__}"
        )
    return event


def stripe_webhook_handler(settings: Settings, router: StripeRouter) -> StripeWebhookHandler:
    """The process-stripe-webhook handler: verify the event, then run its route, if any."""

    async def process_stripe_webhook(
        payload: payloads.ProcessStripeWebhookPayload, job: BaseJob
    ) -> dict[str, Any]:
        if settings.stripe_webhook_secret is None:
            raise NonRetryableJobError(
                "STRIPE_WEBHOOK_SECRET is not set: set it to the endpoint's signing secret "
                "(whsec_...) to accept Stripe events"
            )
        secret = settings.stripe_webhook_secret.get_secret_value()
        event = verify_event(payload.payload, payload.signature, secret)
        event_type: str = event["type"]
        summary: dict[str, Any] = {"event_type": event_type, "event_id": event.get("id")}
        route = router.route_for(event_type)
        if route is None:
            log.info("stripe event has no route", **summary)
            return {**summary, "routed": False}
        result = await route(event, job)
        log.info("stripe event routed", **summary)
        return {**summary, "routed": True, "result": result}

    return process_stripe_webhook
