"""The projections jobtrail ships: the views the queries and the HTTP API read."""

from __future__ import annotations

from projections.attempt_view import AttemptView
from projections.buckets import BucketView
from projections.execution_view import ExecutionView
from projections.projection import Projection


def builtin_projections() -> list[Projection]:
    """Every built-in projection, sorted by name."""
    return [AttemptView(), BucketView(), ExecutionView()]


def names() -> list[str]:
    """The names of the built-in projections, sorted."""
    return [p.name for p in builtin_projections()]
