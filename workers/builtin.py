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
from workers.handlers.cleanup import cleanup_handler
from workers.handlers.export import export_handler
from workers.handlers.report import report_handler


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
    registry = (registry or jobstore.shared_registry).copy()
    defaults: dict[str, Callable[..., Any]] = {
        JOB_TYPES.SEND_EMAIL: send_email_handler(settings),
        JOB_TYPES.PROCESS_WEBHOOK: webhook_handler(settings),
        JOB_TYPES.PROCESS_STRIPE_WEBHOOK: stripe_webhook_handler(
            settings, stripe_router or StripeRouter()
        ),
        JOB_TYPES.EXPORT_DATA: export_handler(settings),
        JOB_TYPES.GENERATE_REPORT: report_handler(settings),
        JOB_TYPES.CLEANUP_OLD_DATA: cleanup_handler(settings),
    }
    for job_type, handler in defaults.items():
        if registry.get(job_type).handler is None:
            registry.set_handler(job_type, handler)
    return registry
