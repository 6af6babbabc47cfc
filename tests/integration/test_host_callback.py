"""A job's own callbacks, called by a real host over real HTTP under the address policy.

The receiver is a real aiohttp server on 127.0.0.1; the host under test is the whole
host of ``tests.host_support`` (its relay off where QStash plays no part).  The host's
policy is made strict by swapping its settings, as a production host's would be.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.host_support import Host, dispatched, free_port, running_host
from workers import notification
from workers.handlers import verify_signature

FAILURE_PATH = "/_jobtrail/qstash/failure"


@dataclasses.dataclass
class Receiver:
    """A callback receiver: every request it got, as (path, headers, raw body)."""

    port: int
    requests: list[tuple[str, dict[str, str], bytes]] = dataclasses.field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """Answers /done with 200 and /redirect with a 302 to /done."""
    got = Receiver(free_port())

    async def record(request: web.Request) -> web.Response:
        got.requests.append((request.path, dict(request.headers), await request.read()))
        if request.path == "/redirect":
            raise web.HTTPFound("/done")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{name}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", got.port).start()
    try:
        yield got
    finally:
        await runner.cleanup()


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


async def test_failure_callback_is_signed_and_carries_a_stable_notification_id(
    host: Host, receiver: Receiver
) -> None:
    job_id = await failed_by_qstash(host, receiver.url("/done?token=abc"))

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

    assert receiver.requests == []


async def test_failure_callback_port_outside_the_allow_list_is_not_called(
    host: Host, receiver: Receiver
) -> None:
    host.ctx.settings = host.settings.model_copy(update={"webhook_allowed_ports": "80,443"})

    await failed_by_qstash(host, receiver.url("/done"))

    assert receiver.requests == []


async def test_failure_callback_redirect_is_not_followed(host: Host, receiver: Receiver) -> None:
    await failed_by_qstash(host, receiver.url("/redirect"))

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
    finally:
        await runner.cleanup()

    assert proxy == []
    assert [path for path, _, _ in receiver.requests] == ["/done"]


async def test_success_callback_is_signed_and_called_under_the_policy(
    host: Host, receiver: Receiver
) -> None:
    state = await _completed_job_state(host, receiver.url("/done"))

    status = await notification.job_completed(host.ctx, state, 1, 1, 0.25, {"ok": True})

    assert status == 200
    [(_, headers, raw_body)] = receiver.requests
    secret = host.settings.webhook_signing_secret.get_secret_value()
    assert verify_signature(secret, headers["X-Jobtrail-Signature"], raw_body)
    assert headers["X-Jobtrail-Notification-Id"] == f"{state.job_id}:1:completed"
    body = orjson.loads(raw_body)
    assert body["status"] == "completed"
    assert body["result"] == {"ok": True}

    make_strict(host)
    assert await notification.job_completed(host.ctx, state, 1, 1, 0.25, None) is None
    assert len(receiver.requests) == 1


async def test_completed_job_calls_its_success_callback(db_dsn: str, receiver: Receiver) -> None:
    async with running_host(db_dsn) as host:
        job_id = await host.dispatcher.enqueue(
            "test-job", {"tag": "t"}, None, {"callback": receiver.url("/done")}
        )
        await host.wait_status(job_id, "completed")

    [(_, headers, _)] = receiver.requests
    assert headers["X-Jobtrail-Notification-Id"] == f"{job_id}:1:completed"


async def _completed_job_state(host: Host, callback: str) -> Any:
    job_id = await host.dispatcher.enqueue("test-job", {"tag": "t"}, None, {"callback": callback})
    return await host.dispatcher.load(job_id)
