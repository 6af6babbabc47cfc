"""The built-in handlers' errors: which failures retrying may fix, and which it cannot."""

from __future__ import annotations

from jobstore import NonRetryableJobError


class HandlerError(Exception):
    """A built-in handler's attempt failed; a later attempt may succeed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class EmailDeliveryError(HandlerError):
    """The SMTP server could not be reached or refused the email for now; retry later."""


class WebhookDeliveryError(HandlerError):
    """The webhook target could not be reached or answered 5xx, 408 or 429; retry later."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WebhookTargetRefusedError(NonRetryableJobError):
    """The webhook's URL points where jobtrail may not send requests (SSRF protection)."""
