"""OpenTelemetry traces of a job, from the request that enqueued it to the handler that ran it.

Off unless switched on, and then only through the optional extra ``jobtrail[otel]``:

* ``setup(service)`` is what jobtrail's own processes (``jobtrail serve``, ``dashboard``,
  the CLI) call at start.  It does something only when the standard ``OTEL_*`` variables
  ask for traces (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
  or ``OTEL_TRACES_EXPORTER``; ``OTEL_SDK_DISABLED=true`` and ``OTEL_TRACES_EXPORTER=none``
  win).  It then configures the SDK (OTLP over HTTP, or the console exporter) and the
  aiohttp and asyncpg instrumentations.
* ``enable()`` is for an application that configures the SDK itself: jobtrail then uses
  the application's tracer provider.

Nothing here imports ``opentelemetry`` before one of those calls, so without the extra,
or without the variables, jobtrail runs exactly as before.

The spans of one job, all in one trace:

    enqueue <type>        PRODUCER  the caller's span is its parent
    └ publish <type>      PRODUCER  the relay's publish to QStash, one per dispatch
      ├ POST /jobs/…      SERVER    aiohttp's instrumentation, one per delivery
      └ deliver <type>    CONSUMER  one per delivery, so retries are siblings (linked
        │                           to their delivery's server span)
        └ handle <type>   INTERNAL  the handler (absent when nothing ran)

The context travels as a W3C ``traceparent``: every event appended inside a span records
it in the event's metadata (``stamp``), the relay reads it from the dispatch event, and
the publish span's context goes to QStash both as a forwarded ``traceparent`` header and
in the envelope (``trace``), so a host without the aiohttp instrumentation still joins the
trace.  While a delivery runs, its trace id is bound into the log lines (``trace_id``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog

log = structlog.get_logger("jobtrail.tracing")

TRACEPARENT = "traceparent"
"""Where a trace context is kept: the events' metadata, the envelope's ``trace`` field's
name in headers."""

P = ParamSpec("P")
R = TypeVar("R")
_ASKING = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_tracer: Any = None  # an opentelemetry Tracer once switched on


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter) or any(environ.get(name) for name in _ASKING)


def active() -> bool:
    """Whether jobtrail is making spans."""
    return _tracer is not None


def setup(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Configure the SDK from ``OTEL_*`` when asked; return whether tracing is on.

    ``service`` names the process when ``OTEL_SERVICE_NAME`` does not.  Asked for traces
    without the extra installed, it says so once and carries on without them.
    """
    if active() or not requested(environ):
        return active()
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError:
        log.warning(
            "OTEL_* asks for traces but the extra is not installed; "
            "install jobtrail[otel] to get them"
        )
        return False
    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        if exporter_name != "otlp":
            log.warning("unknown OTEL_TRACES_EXPORTER; using otlp", exporter=exporter_name)
        protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        if protocol != "http/protobuf":
            log.warning("only OTLP over HTTP is shipped; using http/protobuf", protocol=protocol)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    name = environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _instrument()
    enable()
    log.info("tracing on", service=name, exporter=exporter_name)
    return True


def enable() -> None:
    """Make spans with the global tracer provider (for applications that set up the SDK)."""
    global _tracer
    from importlib.metadata import PackageNotFoundError, version

    from opentelemetry import trace

    try:
        ours = version("jobtrail")
    except PackageNotFoundError:  # running from a source tree that was never installed
        ours = "0"
    _tracer = trace.get_tracer("jobtrail", ours)


def disable() -> None:
    """Stop making spans (tests; a provider that was set stays set)."""
    global _tracer
    _tracer = None


def flush(timeout_ms: int = 5000) -> None:
    """Export the spans still buffered (at shutdown)."""
    if not active():
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_ms)


def _instrument() -> None:
    """The database and HTTP spans: asyncpg, aiohttp's client and server."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    for instrumentor in (AsyncPGInstrumentor(), AioHttpClientInstrumentor()):  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    server = AioHttpServerInstrumentor()
    if not server.is_instrumented_by_opentelemetry:
        server.instrument()  # applies to aiohttp Applications created from now on


def stamp(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """``metadata`` with the current span's ``traceparent`` added (unchanged when off)."""
    if _tracer is None:
        return metadata
    parent = current_traceparent()
    if parent is None or TRACEPARENT in metadata:
        return metadata
    return {**metadata, TRACEPARENT: parent}


def current_traceparent() -> str | None:
    """The current span's context as a W3C ``traceparent``, or None."""
    if _tracer is None:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def trace_id_of(traceparent: object) -> str | None:
    """The trace id a ``traceparent`` names (32 hex digits), or None when it is not one."""
    if not isinstance(traceparent, str):
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1]


def trace_ids(metadatas: Iterable[Mapping[str, Any]]) -> list[str]:
    """The trace ids recorded in events' metadata, each once, in the order first seen."""
    seen = (trace_id_of(m.get(TRACEPARENT)) for m in metadatas)
    return list(dict.fromkeys(t for t in seen if t is not None))


def _context(traceparent: str | None) -> Any:
    from opentelemetry import propagate

    return propagate.extract({TRACEPARENT: traceparent} if traceparent else {})


@contextmanager
def producing(job_type: str, **attributes: Any) -> Iterator[None]:
    """The producer span of an enqueue (child of the caller's current span)."""
    if _tracer is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(
        f"enqueue {job_type}", kind=SpanKind.PRODUCER, attributes=_attrs(job_type, attributes)
    ):
        yield


def produces(
    method: Callable[Concatenate[Any, str, P], Awaitable[R]],
) -> Callable[Concatenate[Any, str, P], Awaitable[R]]:
    """Run an enqueue method (``self, job_type, ...``) inside its producer span."""

    @functools.wraps(method)
    async def traced(self: Any, job_type: str, *args: P.args, **kwargs: P.kwargs) -> R:
        if _tracer is None:
            return await method(self, job_type, *args, **kwargs)
        with producing(str(job_type)):
            return await method(self, job_type, *args, **kwargs)

    return traced  # type: ignore[return-value]  # functools' wrapper type is narrower


class Publishing:
    """The relay's publish spans for one batch: one per dispatch, ended after the call."""

    def __init__(self) -> None:
        self._spans: dict[tuple[str, int], Any] = {}

    def start(self, job_id: str, dispatch: int, job_type: str, traceparent: object) -> None:
        """Open the publish span of one dispatch, under the trace its event recorded."""
        if _tracer is None:
            return
        from opentelemetry.trace import SpanKind

        parent = _context(traceparent if isinstance(traceparent, str) else None)
        self._spans[(job_id, dispatch)] = _tracer.start_span(
            f"publish {job_type}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=_attrs(job_type, {"job_id": job_id, "dispatch": dispatch}),
        )

    def traceparent(self, job_id: str, dispatch: int) -> str | None:
        """The context to send with this dispatch's message (its publish span's)."""
        span = self._spans.get((job_id, dispatch))
        if span is None:
            return None
        from opentelemetry import propagate, trace

        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return carrier.get(TRACEPARENT)

    def end(self, error: BaseException | None = None) -> None:
        """Close every span of the batch (marked as an error when the publish failed)."""
        if not self._spans:
            return
        from opentelemetry.trace import Status, StatusCode

        for span in self._spans.values():
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()
        self._spans.clear()


@contextmanager
def consuming(job_type: str, traceparent: object, **attributes: Any) -> Iterator[Any]:
    """The consumer span of one delivery; binds its trace id into the log lines.

    Its parent is the publish span the envelope names, so the deliveries of one dispatch
    (its retries) are siblings; the HTTP server span of the request, when aiohttp's
    instrumentation made one, is linked.  Without a context in the envelope (a scheduled
    run) the current span is the parent.  Yields the span (None when off), so the answer's
    status can be set on it.
    """
    if _tracer is None:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    current = trace.get_current_span().get_span_context()
    sent = trace_id_of(traceparent) is not None
    with (
        _tracer.start_as_current_span(
            f"deliver {job_type}",
            context=_context(str(traceparent)) if sent else None,
            kind=SpanKind.CONSUMER,
            attributes=_attrs(job_type, attributes),
            links=[Link(current)] if sent and current.is_valid else None,
        ) as span,
        structlog.contextvars.bound_contextvars(
            trace_id=f"{span.get_span_context().trace_id:032x}"
        ),
    ):
        yield span


def answered(span: Any, status: int) -> None:
    """Record a delivery's answer on its consumer span (an error status for 5xx)."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"answered {status}"))


@contextmanager
def handling(job_type: str, **attributes: Any) -> Iterator[None]:
    """The span of the handler itself (an exception it raises is recorded on it)."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(
        f"handle {job_type}", attributes=_attrs(job_type, attributes)
    ):
        yield


def _attrs(job_type: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"jobtrail.job_type": job_type}
    for key, value in attributes.items():  # plain names are jobtrail's own attributes
        if isinstance(value, str | int | float | bool):
            out[key if "." in key else f"jobtrail.{key}"] = value
    return out
