"""The built-in job types with their real handlers attached (an application may replace any)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jobstore
from jobstore import JOB_TYPES, JobRegistry, Settings
from workers.handlers import (
    StripeRouter,
    send_email_handler,
    stripe_webhook_handler,
    webhook_handler,
)


def registry_with_handlers(
    settings: Settings,
    *,
    registry: JobRegistry | None = None,
    stripe_router: StripeRouter | None = None,
) -> JobRegistry:
    """A registry of the six seed job types whose handlers use ``settings``.

    Handlers already set on ``registry`` are kept, so an application's own handler for a
    built-in type wins.
    """
    registry = (registry or jobstore.registry).copy()
    defaults: dict[str, Callable[..., Any]] = {
        JOB_TYPES.SEND_EMAIL: send_email_handler(settings),
        JOB_TYPES.PROCESS_WEBHOOK: webhook_handler(settings),
        JOB_TYPES.PROCESS_STRIPE_WEBHOOK: stripe_webhook_handler(
            settings, stripe_router or StripeRouter()
        ),
    }
    for job_type, handler in defaults.items():
        if registry.get(job_type).handler is None:
            registry.set_handler(job_type, handler)
    return registry
