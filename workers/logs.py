"""structlog, configured once at start: JSON lines in production, pretty in a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from jobstore import redaction


def configure(*, json: bool | None = None, level: int = logging.INFO) -> None:
    """Send structlog output to stderr; JSON unless stderr is a terminal (or ``json`` says)."""
    use_json = not sys.stderr.isatty() if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redaction.structlog_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
