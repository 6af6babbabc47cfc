"""What every command shares: settings read once, async entry, and one-line errors."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson
import typer
from pydantic import SecretStr, ValidationError

import jobstore
import projections
from jobstore import JobRegistry, JobstoreError, Settings

T = TypeVar("T")


def load_settings() -> Settings:
    """Read the settings from the environment, or exit with one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        fail(f"invalid configuration: {settings_problems(exc)}")


def settings_problems(exc: ValidationError) -> str:
    """What is wrong with the settings, one ``SETTING: problem`` per error, on one line
    (pydantic's own text spans lines and links to its docs; values are never shown)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: "
        f"{error['msg'].removeprefix('Value error, ')}"
        for error in exc.errors()
    )


def log_level() -> int:
    """The configured log level (JOBTRAIL_LOG_LEVEL), INFO when the settings are unreadable."""
    try:
        name = Settings().log_level
    except ValidationError:
        return logging.INFO
    return int(getattr(logging, name.upper()))


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run an async command; jobtrail's own errors print one line and exit 1."""
    try:
        return asyncio.run(_call(main))
    except JobstoreError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None


async def _call(main: Callable[[], Awaitable[T]]) -> T:
    return await main()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=code)


def print_json(value: Any) -> None:
    """Write ``value`` as one JSON document to stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def application_registry(settings: Settings) -> JobRegistry:
    """The application's own registry (``JOBTRAIL_APP=module:function``), or the built-in one."""
    if not settings.app_registry:
        return jobstore.shared_registry
    module_name, _, attribute = settings.app_registry.partition(":")
    try:
        factory: Any = getattr(importlib.import_module(module_name), attribute or "registry")
    except (ImportError, AttributeError) as exc:
        fail(
            f"JOBTRAIL_APP={settings.app_registry!r} cannot be loaded: {exc}; "
            "expected module:function returning a JobRegistry"
        )
    registry = factory(settings) if callable(factory) else factory
    if not isinstance(registry, JobRegistry):
        fail(
            f"JOBTRAIL_APP={settings.app_registry!r} gave {type(registry).__name__}, "
            "not a JobRegistry"
        )
    return registry


def kept_api_token(settings: Settings) -> tuple[Settings, Path, bool] | None:
    """Settings with the generated API token kept in its owner-only file, the file, and
    whether it was made now; None when API tokens are configured (one line on bad ones)."""
    try:
        if projections.tokens_from_settings(settings):
            return None
        token, path, created = projections.kept_token(settings)
    except (projections.TokenConfigError, OSError) as exc:
        fail(str(exc))
    return settings.model_copy(update={"api_token": SecretStr(token)}), path, created


def shown_secret(secret: SecretStr | None) -> str:
    """``": <secret>"`` when stderr is a terminal, else nothing: secrets never reach logs."""
    if secret is None or not sys.stderr.isatty():
        return ""
    return f": {secret.get_secret_value()}"
