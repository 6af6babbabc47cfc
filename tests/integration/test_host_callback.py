"""A job's own callbacks, called by a real host over real HTTP under the address policy.

The receiver is a real aiohttp server on 127.0.0.1; the host under test is the whole
host of ``tests.host_support`` (its relay off where QStash plays no part).  The host's
policy is made strict by swapping its settings, as a production host's would be.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web

from jobstore import job_events
from tests.host_support import Host, dispatched, free_port, running_host, serving
from workers import decision
from workers.handlers import verify_signature

FAILURE_PATH = "/_jobtrail/qstash/failure"


@dataclasses.dataclass
class Receiver:
    """A callback receiver: every request it got, as (path, headers, raw body)."""

    port: int
    requests: list[tuple[str, dict[str, str], bytes]] = dataclasses.field(default_factory=list)
    fail_first: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait(self, count: int = 1, within: float = 15.0) -> None:
        """Wait until ``count`` requests arrived."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} callbacks came"
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """Answers /done with 200 and /redirect with a 302 to /done."""
    got = Receiver(free_port())

    async def record(request: web.Request) -> web.Response:
        got.requests.append((request.path, dict(request.headers), await request.read()))
        if request.path == "/redirect":
            raise web.HTTPFound("/done")
        if len(got.requests) <= got.fail_first:
            return web.Response(status=503, text="not now")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{name}", record)
    async with serving(app, got.port):
        yield got


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, relay=False) as running:
        yield running


def make_strict(host: Host) -> None:
    """The host's policy becomes the production default: public addresses, ports 80/443."""
    host.ctx.settings = host.settings.model_copy(
        update={"webhook_allow_private_targets": False, "webhook_allowed_ports": "80,443"}
    )


async def failed_by_qstash(host: Host, failure_callback: str) -> str:
    """A job with ``failure_callback`` whose dispatch QStash gives up on; its id."""
    job_id = str(uuid.uuid4())
    event = dispatched(job_id, retries=0, timeout=1.0, failure_callback=failure_callback)
    await host.ctx.store.append(f"job-{job_id}", [event], "no_stream")
    source = {"job_id": job_id, "dispatch": 1, "type": "test-job", "payload": {}, "metadata": {}}
    report = {
        "status": 500,
        "retried": 0,
        "sourceMessageId": "msg_1",
        "sourceBody": base64.b64encode(orjson.dumps(source)).decode(),
    }
    status, _, _ = await host.post(FAILURE_PATH, report)
    assert status == 200
    await host.wait_status(job_id, "failed")
    return job_id


async def notified(host: Host, kind: str, result: str, count: int = 1) -> None:
    """Wait until the host counted ``count`` notifications of ``kind`` ending as ``result``."""
    deadline = time.monotonic() + 15
    labels = {"kind": kind, "result": result}
    while (
        host.ctx.metrics.registry.get_sample_value("jobtrail_notifications_total", labels) or 0
    ) < count:
        assert time.monotonic() < deadline, f"no {kind} notification ended {result}"
        await asyncio.sleep(0.02)


async def test_failure_callback_is_signed_and_carries_a_stable_notification_id(
    host: Host, receiver: Receiver
) -> None:
    job_id = await failed_by_qstash(host, receiver.url("/done?token=abc"))
    await receiver.wait()

    [(path, headers, raw_body)] = receiver.requests
    assert path == "/done"
    secret = host.settings.webhook_signing_secret.get_secret_value()
    assert verify_signature(secret, headers["X-Jobtrail-Signature"], raw_body)
    assert headers["X-Jobtrail-Notification-Id"] == f"{job_id}:1:failed"
    assert headers["Idempotency-Key"] == f"{job_id}:1:failed"
    assert headers["X-Jobtrail-Event"] == "job.failed"
    body = orjson.loads(raw_body)
    assert (body["job_id"], body["status"], body["dispatch"]) == (job_id, "failed", 1)


@pytest.mark.parametrize("where", ["http://127.0.0.1:{port}/done", "http://localhost:{port}/done"])
async def test_failure_callback_to_a_private_address_is_not_called_by_a_strict_host(
    host: Host, receiver: Receiver, where: str
) -> None:
    """Recorded before the policy tightened (or forged into the log): still never called."""
    make_strict(host)

    await failed_by_qstash(host, where.format(port=receiver.port))
    await notified(host, "failed", "refused")

    assert receiver.requests == []


async def test_failure_callback_port_outside_the_allow_list_is_not_called(
    host: Host, receiver: Receiver
) -> None:
    host.ctx.settings = host.settings.model_copy(update={"webhook_allowed_ports": "80,443"})

    await failed_by_qstash(host, receiver.url("/done"))
    await notified(host, "failed", "refused")

    assert receiver.requests == []


async def test_failure_callback_redirect_is_not_followed(host: Host, receiver: Receiver) -> None:
    await failed_by_qstash(host, receiver.url("/redirect"))
    await receiver.wait()
    await notified(host, "failed", "rejected")

    assert [path for path, _, _ in receiver.requests] == ["/redirect"]


async def test_failure_callback_ignores_proxies_from_the_environment(
    host: Host, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTTP_PROXY in the host's environment must not see (or redirect) the call."""
    proxy: list[str] = []

    async def record(request: web.Request) -> web.Response:
        proxy.append(str(request.url))
        return web.Response(text="proxied")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        await failed_by_qstash(host, receiver.url("/done"))
        await receiver.wait()
    finally:
        await runner.cleanup()

    assert proxy == []
    assert [path for path, _, _ in receiver.requests] == ["/done"]


async def test_a_refused_callback_url_is_final_and_counted(host: Host, receiver: Receiver) -> None:
    make_strict(host)
    # A URL the strict policy refuses, written straight into the log (as if recorded before
    # the policy tightened): the host never calls it, and QStash does not retry.
    event = dispatched(str(uuid.uuid4()), retries=0, failure_callback=receiver.url("/done"))
    await host.ctx.store.append(f"job-{event.job_id}", [event], "no_stream")
    await host.ctx.store.append(
        f"job-{event.job_id}",
        [job_events.JobFailed(dispatch=1, reason="test", error_type="X", error_message="y")],
    )

    await notified(host, "failed", "refused")
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"tag": "fine"}, "completed"),
        ({"fail_times": 9}, "failed"),  # the last attempt raised
        ({"raise_kind": "nonretryable"}, "failed"),  # a non-retryable error
    ],
)
async def test_every_outcome_the_host_records_calls_the_jobs_callback_once(
    db_dsn: str, receiver: Receiver, payload: dict[str, Any], kind: str
) -> None:
    options = {
        "retries": 0,
        "callback": receiver.url("/done"),
        "failure_callback": receiver.url("/failed"),
    }
    async with running_host(db_dsn) as host:
        job_id = await host.dispatcher.enqueue("test-job", payload, None, options)
        await host.wait_status(job_id, kind)
        await receiver.wait()
        await notified(host, kind, "delivered")

    [(path, headers, raw_body)] = receiver.requests
    assert path == ("/done" if kind == "completed" else "/failed")
    assert headers["X-Jobtrail-Notification-Id"] == f"{job_id}:1:{kind}"
    secret = host.settings.webhook_signing_secret.get_secret_value()
    assert verify_signature(secret, headers["X-Jobtrail-Signature"], raw_body)
    body = orjson.loads(raw_body)
    assert (body["job_id"], body["status"], body["job_type"]) == (job_id, kind, "test-job")
    assert body["notification_id"] == f"{job_id}:1:{kind}"


async def test_a_sweeper_verdict_calls_the_failure_callback(host: Host, receiver: Receiver) -> None:
    job_id = str(uuid.uuid4())
    event = dispatched(job_id, retries=0, failure_callback=receiver.url("/failed"))
    await host.ctx.store.append(f"job-{job_id}", [event], "no_stream")
    state = await host.dispatcher.load(job_id)
    verdict = decision.decide_sweep(state, 1, "failed", time.time())
    await host.ctx.store.append(f"job-{job_id}", verdict, state.version)

    await receiver.wait()
    [(_, headers, _)] = receiver.requests
    assert headers["X-Jobtrail-Notification-Id"] == f"{job_id}:1:failed"


async def test_a_host_killed_before_the_call_still_notifies_and_repeats_keep_their_id(
    db_dsn: str, receiver: Receiver
) -> None:
    """The failure is recorded by a host whose notifier never ran (it died); the next host
    catches up from the notifier's checkpoint.  The receiver fails the first call, so the
    notification arrives twice, both times with the same id."""
    receiver.fail_first = 1
    options = {"retries": 0, "failure_callback": receiver.url("/failed")}
    async with running_host(db_dsn, notifier=False) as first:
        job_id = await first.dispatcher.enqueue("test-job", {"fail_times": 9}, None, options)
        await first.wait_status(job_id, "failed")
        await asyncio.sleep(0.3)
    assert receiver.requests == []

    async with running_host(db_dsn) as second:
        await receiver.wait(2)
        await notified(second, "failed", "delivered")

    ids = {headers["X-Jobtrail-Notification-Id"] for _, headers, _ in receiver.requests}
    assert ids == {f"{job_id}:1:failed"}


async def test_the_jobs_history_shows_each_callback_call_and_the_job_stays_archivable(
    db_dsn: str, receiver: Receiver
) -> None:
    receiver.fail_first = 1
    options = {"retries": 0, "failure_callback": receiver.url("/failed?token=secret")}
    async with running_host(db_dsn) as host:
        job_id = await host.dispatcher.enqueue("test-job", {"fail_times": 9}, None, options)
        await receiver.wait(2)
        deadline = time.monotonic() + 10
        while (
            len(
                notes := [
                    e for e in await host.events(job_id) if isinstance(e, job_events.JobNotified)
                ]
            )
            < 2
        ):
            assert time.monotonic() < deadline, notes
            await asyncio.sleep(0.02)
        assert [(n.result, n.status) for n in notes] == [("error", 503), ("delivered", 200)]
        assert {n.notification_id for n in notes} == {f"{job_id}:1:failed"}
        assert all("secret" not in n.url for n in notes)  # shown without its query
        state = await host.dispatcher.load(job_id)
        assert state is not None and state.status == "failed"  # a record, not a change

        future = datetime.now(UTC) + timedelta(days=1)
        moved = await host.ctx.store.archive_streams([f"job-{job_id}"], future, 30)
    assert moved == [f"job-{job_id}"]
