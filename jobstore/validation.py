"""Validating what callers hand in, with errors a person can act on."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jobstore import errors

M = TypeVar("M", bound=BaseModel)


def validate_model(
    model: type[M], value: Any, what: str, context: dict[str, Any] | None = None
) -> M:
    """``value`` as a ``model``; JobValidationError lists every field problem under ``what``.

    With a ``context`` (the address policy, say) an instance is validated again, so a
    model built elsewhere cannot skip the checks the context brings.
    """
    if isinstance(value, model) and context is None:
        return value
    try:
        raw = value.model_dump() if isinstance(value, BaseModel) else value
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        lines = [f"{what}.{line}" for line in errors.describe_validation_errors(exc)]
        raise errors.JobValidationError(f"invalid {what}", lines) from None
