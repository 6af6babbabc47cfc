"""process-webhook against a real aiohttp server on 127.0.0.1, and its SSRF refusals.

Every session the handler builds here goes through ``guarded_session``, which records
each request and aborts (before any connection) one aimed at a non-loopback host, so a
broken address policy fails the test instead of sending traffic to 10.x or 169.254.x.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr, ValidationError

from jobstore import (
    AddressPolicy,
    BaseJob,
    BaseJobMetadata,
    NonRetryableJobError,
    Settings,
    payloads,
)
from workers import handlers

SECRET = "whk-test-secret"
JOB_ID = str(uuid.UUID(int=7))
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@dataclass
class Receiver:
    """The webhook target: what it received, and the server it runs on."""

    server: TestServer
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server.port}{path}"


@pytest.fixture
async def receiver(aiohttp_server: ServerFactory) -> Receiver:
    """A real aiohttp server answering /status/<code>, and /redirect with a 302."""
    received: list[tuple[str, dict[str, str], bytes]] = []

    async def record(request: web.Request) -> web.Response:
        received.append((request.path, dict(request.headers), await request.read()))
        if request.path == "/redirect":
            raise web.HTTPFound("/status/200")
        return web.Response(status=int(request.match_info.get("code", "200")))

    app = web.Application()
    app.router.add_post("/status/{code}", record)
    app.router.add_post("/redirect", record)
    server = await aiohttp_server(app)
    return Receiver(server, received)


@dataclass
class Traffic:
    """Requests the handler started, as seen from inside its own session."""

    urls: list[yarl.URL] = field(default_factory=list)

    def session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        async def on_request_start(
            session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
        ) -> None:
            self.urls.append(params.url)
            host = params.url.host
            if host not in {"localhost", "hooks.example"}:
                assert ipaddress.ip_address(host).is_loopback, f"refusing to send to {host}"

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_request_start)
        return aiohttp.ClientSession(connector=connector, trace_configs=[trace])


def settings(*, allow_private: bool, ports: str = "*") -> Settings:
    return Settings(
        webhook_signing_secret=SecretStr(SECRET),
        webhook_allow_private_targets=allow_private,
        webhook_allowed_ports=ports,
    )


def webhook(url: str, **extra: Any) -> payloads.ProcessWebhookPayload:
    body = {"order": {"id": 17, "total": "9.99"}, "note": "Zoë ✓"}
    return payloads.ProcessWebhookPayload.model_validate(
        {"url": url, "event": "order.paid", "body": body} | extra
    )


def make_job(dispatch: int = 1, attempt: int = 1) -> BaseJob:
    return BaseJob(
        job_id=JOB_ID,
        type="process-webhook",
        payload={},
        metadata=BaseJobMetadata(),
        dispatch=dispatch,
        attempt=attempt,
    )


async def test_receiver_can_verify_the_signature_and_sees_the_idempotency_key(
    receiver: Receiver,
) -> None:
    handle = handlers.webhook_handler(settings(allow_private=True))
    payload = webhook(receiver.url("/status/200"), headers={"X-Tenant": "acme"})

    result = await handle(payload, make_job())

    assert result == {"status": 200}
    [(_, headers, raw_body)] = receiver.requests
    timestamp = headers["X-Jobtrail-Timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256)
    assert headers["X-Jobtrail-Signature"] == f"t={timestamp},v1={expected.hexdigest()}"
    assert handlers.verify_signature(SECRET, headers["X-Jobtrail-Signature"], raw_body)
    assert not handlers.verify_signature(SECRET, headers["X-Jobtrail-Signature"], raw_body + b" ")
    assert not handlers.verify_signature("other", headers["X-Jobtrail-Signature"], raw_body)
    assert headers["Idempotency-Key"] == f"{JOB_ID}:1"
    assert headers["X-Jobtrail-Event"] == "order.paid"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Tenant"] == "acme"
    assert raw_body.decode() == '{"order":{"id":17,"total":"9.99"},"note":"Zoë ✓"}'


async def test_idempotency_key_is_stable_across_attempts_and_changes_per_dispatch(
    receiver: Receiver,
) -> None:
    handle = handlers.webhook_handler(settings(allow_private=True))
    payload = webhook(receiver.url("/status/204"))

    for dispatch, attempt in [(1, 1), (1, 2), (2, 1)]:
        assert await handle(payload, make_job(dispatch, attempt)) == {"status": 204}

    keys = [headers["Idempotency-Key"] for _, headers, _ in receiver.requests]
    assert keys == [f"{JOB_ID}:1", f"{JOB_ID}:1", f"{JOB_ID}:2"]


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_server_errors_and_throttling_are_retryable(receiver: Receiver, status: int) -> None:
    handle = handlers.webhook_handler(settings(allow_private=True))

    with pytest.raises(handlers.WebhookDeliveryError, match=f"answered {status}") as caught:
        await handle(webhook(receiver.url(f"/status/{status}")), make_job())
    assert not isinstance(caught.value, NonRetryableJobError)
    assert caught.value.status == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_client_errors_fail_without_retry(receiver: Receiver, status: int) -> None:
    handle = handlers.webhook_handler(settings(allow_private=True))

    with pytest.raises(NonRetryableJobError, match=f"answered {status}"):
        await handle(webhook(receiver.url(f"/status/{status}")), make_job())
    assert len(receiver.requests) == 1


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    handle = handlers.webhook_handler(settings(allow_private=True))

    with pytest.raises(NonRetryableJobError, match="302, a redirect to '/status/200'"):
        await handle(webhook(receiver.url("/redirect")), make_job())
    assert [path for path, _, _ in receiver.requests] == ["/redirect"]


async def test_unreachable_target_is_retryable() -> None:
    closed = TestServer(web.Application(), host="127.0.0.1")
    await closed.start_server()
    port = closed.port
    await closed.close()
    handle = handlers.webhook_handler(settings(allow_private=True))

    with pytest.raises(handlers.WebhookDeliveryError, match="could not deliver") as caught:
        await handle(webhook(f"http://127.0.0.1:{port}/"), make_job())
    assert not isinstance(caught.value, NonRetryableJobError)


@pytest.mark.parametrize(
    "name", ["Idempotency-Key", "x-jobtrail-signature", "Content-Type", "Host"]
)
async def test_payload_headers_cannot_override_reserved_ones(receiver: Receiver, name: str) -> None:
    handle = handlers.webhook_handler(settings(allow_private=True))

    with pytest.raises(NonRetryableJobError, match="cannot be overridden"):
        await handle(webhook(receiver.url("/status/200"), headers={name: "x"}), make_job())
    assert receiver.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/status/200",
        "http://localhost:{port}/status/200",
        "http://[::1]:{port}/status/200",
        "http://[::ffff:127.0.0.1]:{port}/status/200",
        "http://[::ffff:10.0.0.1]/",
        "http://10.0.0.1/",
        "http://192.168.1.20/",
        "http://172.16.5.4/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:{port}/status/200",
        "http://224.0.0.1/",
        "https://240.0.0.1/",
    ],
)
async def test_private_targets_are_refused_before_any_connection(
    receiver: Receiver, url: str
) -> None:
    traffic = Traffic()
    handle = handlers.webhook_handler(settings(allow_private=False), traffic.session)

    with pytest.raises(handlers.WebhookTargetRefusedError, match="may only go to public"):
        await handle(webhook(url.format(port=receiver.server.port)), make_job())
    assert traffic.urls == []
    assert receiver.requests == []


async def test_hostname_resolving_to_loopback_is_refused(receiver: Receiver) -> None:
    async def fake_dns(host: str, port: int) -> list[str]:
        return {"hooks.example": ["127.0.0.1"], "mixed.example": ["93.184.216.34", "10.1.2.3"]}[
            host
        ]

    traffic = Traffic()
    handle = handlers.webhook_handler(
        settings(allow_private=False), traffic.session, lookup=fake_dns
    )

    for host in ["hooks.example", "mixed.example"]:
        with pytest.raises(handlers.WebhookTargetRefusedError, match=host):
            await handle(webhook(receiver.url("/status/200", host=host)), make_job())
    assert traffic.urls == []
    assert receiver.requests == []


async def test_connection_goes_to_the_checked_address_without_a_second_lookup(
    receiver: Receiver,
) -> None:
    """DNS rebinding cannot work: the host is resolved once and that answer is used."""
    answers = [["127.0.0.1"]]

    async def one_shot_dns(host: str, port: int) -> list[str]:
        if not answers:
            raise OSError(f"second lookup of {host}")
        return answers.pop()

    handle = handlers.webhook_handler(settings(allow_private=True), lookup=one_shot_dns)

    result = await handle(webhook(receiver.url("/status/200", host="hooks.example")), make_job())

    assert result == {"status": 200}
    [(_, headers, _)] = receiver.requests
    assert headers["Host"] == f"hooks.example:{receiver.server.port}"


async def test_an_address_is_not_looked_up_and_still_checked(receiver: Receiver) -> None:
    """A webhook to an IP address calls no lookup; the policy still judges the address."""

    async def no_lookup(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host} looked up")

    handle = handlers.webhook_handler(settings(allow_private=True), lookup=no_lookup)
    assert await handle(webhook(receiver.url("/status/200")), make_job()) == {"status": 200}

    strict = AddressPolicy(allow_private=False, ports=None)
    for host in ["127.0.0.1", "10.0.0.1", "::1"]:
        with pytest.raises(handlers.WebhookTargetRefusedError, match="may only go to public"):
            await handlers.target.resolve_checked(host, 80, policy=strict, lookup=no_lookup)
    assert await handlers.target.resolve_checked(
        "93.184.216.34", 443, policy=strict, lookup=no_lookup
    ) == ["93.184.216.34"]
    handle = handlers.webhook_handler(settings(allow_private=False), lookup=no_lookup)
    with pytest.raises(handlers.WebhookTargetRefusedError, match="may only go to public"):
        await handle(webhook(receiver.url("/status/200")), make_job())
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("url", ["ftp://example.com/upload", "file:///etc/passwd"])
async def test_non_http_schemes_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="URL scheme should be 'http' or 'https'"):
        webhook(url)
    unchecked = payloads.ProcessWebhookPayload.model_construct(
        url=url, event="order.paid", body={}, headers={}
    )
    traffic = Traffic()
    handle = handlers.webhook_handler(settings(allow_private=True), traffic.session)

    with pytest.raises(handlers.WebhookTargetRefusedError, match="only http:// and https://"):
        await handle(unchecked, make_job())
    assert traffic.urls == []


@pytest.mark.parametrize("ports", ["80,443", "25"])
async def test_ports_outside_the_allow_list_are_refused_before_any_connection(
    receiver: Receiver, ports: str
) -> None:
    """Port 25 on a public host is an SMTP relay: only the allow-list's ports are called."""
    traffic = Traffic()
    handle = handlers.webhook_handler(settings(allow_private=True, ports=ports), traffic.session)

    with pytest.raises(handlers.WebhookTargetRefusedError, match="is not allowed; allowed ports"):
        await handle(webhook(receiver.url("/status/200")), make_job())
    assert traffic.urls == []
    assert receiver.requests == []


async def test_port_on_the_allow_list_is_called(receiver: Receiver) -> None:
    handle = handlers.webhook_handler(
        settings(allow_private=True, ports=f"443,{receiver.server.port}")
    )

    assert await handle(webhook(receiver.url("/status/200")), make_job()) == {"status": 200}
    assert len(receiver.requests) == 1
