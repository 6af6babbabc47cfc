"""projections' errors: callers never see a driver exception, only these."""

from __future__ import annotations

from jobstore import FollowerStopped


class ProjectionError(Exception):
    """Something went wrong in jobtrail's projections (read models)."""

    code = "PROJECTION_ERROR"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.message = str(self)


class ProjectionFailed(FollowerStopped, ProjectionError):
    """A projection could not apply an event; it stays stopped there until it can.

    The follower's own stop (``jobstore.FollowerStopped``: name, position, error, stream,
    event type), raised as a projection error for the API and the CLI.
    """

    code = "PROJECTION_FAILED"


class LeadershipLost(ProjectionError):
    """This process no longer leads the projection; another one applies its events."""

    code = "LEADERSHIP_LOST"


class LeadershipUnavailable(ProjectionError):
    """Another process kept the projection's leadership for longer than we could wait."""

    code = "LEADERSHIP_UNAVAILABLE"


class UnknownProjectionError(ProjectionError):
    """No projection has that name."""

    code = "UNKNOWN_PROJECTION"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no projection named {name!r}; known: {', '.join(known)}")
        self.name = name


class InvalidFilterError(ProjectionError):
    """A query parameter is invalid; ``parameter`` names it and the message says why."""

    code = "INVALID_PARAMETER"

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


class InvalidCursorError(InvalidFilterError):
    """The cursor was not issued by this server for this filter, or it was changed."""

    code = "INVALID_CURSOR"

    def __init__(self, message: str) -> None:
        super().__init__("cursor", message)


class ProjectionTimeoutError(ProjectionError):
    """The views did not reach the requested log position in time."""

    code = "NOT_CAUGHT_UP"
