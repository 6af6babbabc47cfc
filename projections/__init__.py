"""projections: the views folded from the event log, their runner, queries and HTTP API."""

from projections import trend
from projections.api import api_app
from projections.api_context import API_ACCESS, API_CONTEXT, ApiContext
from projections.attempt_view import AttemptView
from projections.audit_route import AUDIT_KEY
from projections.catalog import builtin_projections
from projections.collector import relaxed_gc, settle_for_serving
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
from projections.filter import JobFilter
from projections.projection import Projection
from projections.reader import (
    JobExecutionPage,
    get_job_attempts,
    get_job_execution,
    get_job_history,
    list_job_executions,
)
from projections.rebuild import RebuildResult, rebuild
from projections.replay import CountMismatchError, ReplayOutcome, count_replayable, replay_jobs
from projections.runner import ProjectionRunner
from projections.stats import JobStats, get_job_stats
from projections.status import (
    ProjectionStatus,
    projection_status,
    reader_lag,
    wait_for_position,
)
from projections.token import (
    Access,
    ApiToken,
    Scope,
    TokenConfigError,
    authenticate,
    kept_token,
    parse_tokens,
    tokens_from_settings,
)

__all__ = [
    "API_ACCESS",
    "API_CONTEXT",
    "AUDIT_KEY",
    "Access",
    "ApiContext",
    "ApiToken",
    "AttemptView",
    "CountMismatchError",
    "ExecutionView",
    "InvalidCursorError",
    "InvalidFilterError",
    "JobExecutionPage",
    "JobFilter",
    "JobStats",
    "LeadershipLost",
    "LeadershipUnavailable",
    "Projection",
    "ProjectionError",
    "ProjectionFailed",
    "ProjectionRunner",
    "ProjectionStatus",
    "ProjectionTimeoutError",
    "RebuildResult",
    "ReplayOutcome",
    "Scope",
    "TokenConfigError",
    "UnknownProjectionError",
    "api_app",
    "authenticate",
    "builtin_projections",
    "count_replayable",
    "get_job_attempts",
    "get_job_execution",
    "get_job_history",
    "get_job_stats",
    "kept_token",
    "list_job_executions",
    "parse_tokens",
    "projection_status",
    "reader_lag",
    "rebuild",
    "relaxed_gc",
    "replay_jobs",
    "settle_for_serving",
    "tokens_from_settings",
    "trend",
    "wait_for_position",
]
