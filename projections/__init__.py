"""projections: the views folded from the event log, their runner, queries and HTTP API."""

from projections.attempt_view import AttemptView
from projections.catalog import builtin_projections
from projections.errors import (
    InvalidCursorError,
    InvalidFilterError,
    LeadershipLost,
    LeadershipUnavailable,
    ProjectionError,
    ProjectionFailed,
    ProjectionTimeoutError,
    UnknownProjectionError,
)
from projections.execution_view import ExecutionView
from projections.projection import Projection
from projections.rebuild import RebuildResult, rebuild
from projections.runner import ProjectionRunner
from projections.status import ProjectionStatus, projection_status, wait_for_position

__all__ = [
    "AttemptView",
    "ExecutionView",
    "InvalidCursorError",
    "InvalidFilterError",
    "LeadershipLost",
    "LeadershipUnavailable",
    "Projection",
    "ProjectionError",
    "ProjectionFailed",
    "ProjectionRunner",
    "ProjectionStatus",
    "ProjectionTimeoutError",
    "RebuildResult",
    "UnknownProjectionError",
    "builtin_projections",
    "projection_status",
    "rebuild",
    "wait_for_position",
]
