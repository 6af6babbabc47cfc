"""The errors qstash_local answers with, each carrying its HTTP status."""

from __future__ import annotations


class QStashLocalError(Exception):
    """A request qstash_local cannot serve."""

    status = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """The text sent back as ``{"error": ...}``."""
        return str(self.args[0])


class BadRequest(QStashLocalError):
    """The request is malformed."""

    status = 400


class Unauthorized(QStashLocalError):
    """Missing or wrong token: send Authorization: Bearer <QSTASH_TOKEN> or ?qstash_token=."""

    status = 401


class NotFound(QStashLocalError):
    """No such resource."""

    status = 404


class PayloadTooLarge(QStashLocalError):
    """The request body is too large."""

    status = 413


class TooManyRequests(QStashLocalError):
    """A rate limit or quota is exhausted; retry after its reset."""

    status = 429

    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.headers = headers
