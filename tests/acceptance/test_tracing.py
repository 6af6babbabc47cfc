"""One OpenTelemetry trace from the request that enqueued a job to the handler that ran it.

Real processes: a producer application (its own request span around an enqueue), ``jobtrail
qstash-dev`` and ``jobtrail serve``, exporting over OTLP/HTTP to a receiver this test runs
and decodes with ``opentelemetry-proto``.  Without the ``OTEL_*`` variables nothing of
OpenTelemetry is even imported.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

import jobstore
from jobstore import tracing
from tests.cli_support import jobtrail
from tests.processes import ROOT, serve_stack

pytestmark = pytest.mark.slow

PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from opentelemetry import trace
    import jobstore
    from jobstore import tracing
    from tests.serve_app import with_test_job

    async def main(dsn):
        assert tracing.setup("signup-app"), "tracing did not switch on"
        pool = await jobstore.create_pool(dsn, min_size=1, max_size=2)
        registry = with_test_job(jobstore.Settings())
        dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool), registry)
        tracer = trace.get_tracer("signup-app")
        with tracer.start_as_current_span("POST /signup"):
            job_id = await dispatcher.enqueue("test-job", {"fail_times": 1})
        await pool.close()
        tracing.flush()
        print(job_id)

    asyncio.run(main(sys.argv[1]))
    """
)


@dataclass(frozen=True)
class Span:
    """One exported span, as the receiver decoded it."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    links: tuple[str, ...]
    attributes: dict[str, object]


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver: every span any process exported to it."""

    url: str
    spans: list[Span]

    def named(self, name: str) -> list[Span]:
        """The spans called ``name``."""
        return [s for s in self.spans if s.name == name]


def _value(any_value: object) -> object:
    kind = any_value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(any_value, kind) if kind else None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    spans: list[Span] = []

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent=span.parent_span_id.hex(),
                            links=tuple(link.span_id.hex() for link in span.links),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        answer = trace_service_pb2.ExportTraceServiceResponse()
        return web.Response(body=answer.SerializeToString(), content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Receiver(f"http://127.0.0.1:{port}", spans)
    finally:
        await runner.cleanup()


READER = "reader-token-0123456789abcdef"


async def _dashboard_job_page(host_url: str, job_id: str) -> str:
    """The dashboard's page of ``job_id``, signed in with a read-only token."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(host_url + "/signin") as response:
            (csrf,) = re.findall(r'name="csrf" value="([^"]+)"', await response.text())
        form = {"csrf": csrf, "token": READER}
        async with session.post(host_url + "/signin", data=form) as response:
            assert response.status == 200, "signed in and sent on"
        async with session.get(f"{host_url}/jobs/{job_id}") as response:
            assert response.status == 200
            return await response.text()


async def _until(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_one_trace_from_the_enqueuing_request_to_the_handler_with_retries_as_siblings(
    db_dsn: str, pool: object, receiver: Receiver, tmp_path: Path
) -> None:
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "JOBTRAIL_API_TOKENS": f"viewer:read:{READER}",
    }
    async with serve_stack(
        db_dsn, tmp_path, JOBTRAIL_APP="tests.serve_app:with_test_job", **otel
    ) as stack:
        produced = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", PRODUCER, db_dsn],
            env=stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produced.returncode == 0, produced.stderr
        job_id = produced.stdout.strip().splitlines()[-1]
        store = jobstore.EventStore(pool)  # type: ignore[arg-type]

        async def kinds() -> list[str]:
            return [r.event.type_name for r in await store.read_stream(f"job-{job_id}")]

        deadline = time.monotonic() + 60
        while "job.completed" not in await kinds():
            assert time.monotonic() < deadline, f"job not completed: {stack.serve.output()}"
            await asyncio.sleep(0.1)
        await _until(lambda: len(receiver.named("handle test-job")) >= 2, 30, "handler spans")
        page = await _dashboard_job_page(stack.host_url, job_id)
        assert stack.serve.terminate() == 0
        served_log = stack.serve.output()

    (request,) = receiver.named("POST /signup")
    trace_id = request.trace_id
    ours = [s for s in receiver.spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in ours}

    (enqueue,) = [s for s in ours if s.name == "enqueue test-job"]
    assert enqueue.parent == request.span_id and enqueue.service == "signup-app"
    assert enqueue.kind == trace_pb2.Span.SPAN_KIND_PRODUCER
    (publish,) = [s for s in ours if s.name == "publish test-job"]
    assert publish.parent == enqueue.span_id, "the relay continues the enqueue's trace"
    assert publish.service == "jobtrail-serve"
    assert publish.attributes["jobtrail.job_id"] == job_id

    deliveries = [s for s in ours if s.name == "deliver test-job"]
    assert len(deliveries) == 2, "one failed attempt, one that completed"
    assert {d.parent for d in deliveries} == {publish.span_id}, "retries are siblings"
    assert all(d.kind == trace_pb2.Span.SPAN_KIND_CONSUMER for d in deliveries)
    servers = [s for s in ours if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
    assert len(servers) >= 2 and {s.parent for s in servers} == {publish.span_id}
    for delivery in deliveries:  # each delivery is linked to its HTTP request's span
        assert delivery.links and by_id[delivery.links[0]].kind == trace_pb2.Span.SPAN_KIND_SERVER

    handlers = [s for s in ours if s.name == "handle test-job"]
    assert sorted(int(str(h.attributes["jobtrail.attempt"])) for h in handlers) == [1, 2]
    assert {h.parent for h in handlers} == {d.span_id for d in deliveries}

    database = [s for s in ours if s.attributes.get("db.system") == "postgresql"]
    assert any(by_id.get(s.parent) in deliveries for s in database), "asyncpg spans"
    assert any(s.service == "signup-app" for s in database), "the enqueue's insert is traced"

    history = await store.read_stream(f"job-{job_id}")
    recorded = {tracing.trace_id_of(r.metadata.get(tracing.TRACEPARENT)) for r in history}
    assert recorded == {trace_id}, "every event of the job names the trace"
    shown = await jobtrail(db_dsn, "jobs", "show", job_id, "--json")
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["traces"] == [trace_id]
    text = await jobtrail(db_dsn, "jobs", "show", job_id)
    assert f"trace: {trace_id}" in text.out
    assert f'<code class="trace-id">{trace_id}</code>' in page, "the dashboard names it too"
    started = [line for line in served_log.splitlines() if "attempt started" in line]
    assert len(started) == 2, started
    assert all(f'"trace_id": "{trace_id}"' in line for line in started), "log lines"


def test_without_otel_variables_nothing_of_opentelemetry_is_imported() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        for name in list(os.environ):
            if name.startswith("OTEL_"):
                del os.environ[name]
        from jobstore import tracing
        import workers.app, workers.cli, jobstore.relay
        assert not tracing.setup("x")
        assert tracing.stamp({"a": 1}) == {"a": 1}
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        assert not loaded, loaded
        print("clean")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "clean", done.stderr


def test_asked_for_traces_without_the_extra_runs_on_and_says_so() -> None:
    script = textwrap.dedent(
        """
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError(f"{name} hidden")
        sys.meta_path.insert(0, Hide())
        from jobstore import tracing
        assert tracing.requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
        on = tracing.setup("x", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
        assert on is False and not tracing.active()
        print("off")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "off", done.stderr
    assert "install jobtrail[otel]" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("environ", "asked"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SERVICE_NAME": "only-a-name"}, False),
    ],
)
def test_which_variables_ask_for_traces(environ: dict[str, str], asked: bool) -> None:
    assert tracing.requested(environ) is asked


@pytest.mark.parametrize(
    ("value", "trace_id"),
    [
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "0af7651916cd43dd8448eb211c80319c",
        ),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),
        ("00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
        ("garbage", None),
        (42, None),
    ],
)
def test_trace_ids_are_read_only_from_well_formed_traceparents(
    value: object, trace_id: str | None
) -> None:
    assert tracing.trace_id_of(value) == trace_id
