"""Built-in handlers of the seed job types: send-email, process-webhook, process-stripe-webhook."""

from workers.handlers import target
from workers.handlers.email import send_email_handler
from workers.handlers.error import (
    EmailDeliveryError,
    HandlerError,
    WebhookDeliveryError,
    WebhookTargetRefusedError,
)
from workers.handlers.stripe_webhook import StripeRouter, stripe_webhook_handler
from workers.handlers.webhook import verify_signature, webhook_handler

__all__ = [
    "EmailDeliveryError",
    "HandlerError",
    "StripeRouter",
    "WebhookDeliveryError",
    "WebhookTargetRefusedError",
    "send_email_handler",
    "stripe_webhook_handler",
    "target",
    "verify_signature",
    "webhook_handler",
]
