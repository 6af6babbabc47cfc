"""Job callbacks keep their connections alive, and the address policy still applies to every call.

A host calls a receiver over one kept-alive connection; a call whose own check resolves
the host to other addresses is not carried by a connection made for the old ones; a call
the policy now refuses is refused although a connection to its receiver is open.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.host_support import Host, free_port, running_host, serving
from workers import notification
from workers.handlers import target


@dataclasses.dataclass
class Receiver:
    """A callback receiver on 127.0.0.1: the client port of each request it got."""

    port: int
    peers: list[int] = dataclasses.field(default_factory=list)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/done"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver(free_port())

    async def record(request: web.Request) -> web.Response:
        await request.read()
        got.peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/done", record)
    async with serving(app, got.port):
        yield got


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, relay=False, notifier=False) as running:
        yield running


@pytest.fixture
async def sessions() -> AsyncIterator[notification.CallbackSessions]:
    kept = notification.CallbackSessions(size=2)
    try:
        yield kept
    finally:
        await kept.close()


def answering(*addresses: str) -> target.Lookup:
    async def lookup(host: str, port: int) -> list[str]:
        return list(addresses)

    return lookup


async def call(
    host: Host,
    sessions: notification.CallbackSessions,
    url: str,
    lookup: target.Lookup,
) -> notification.Called:
    body = {"job_id": "j", "dispatch": 1}
    return await notification.call_callback(
        host.ctx, sessions, url, body, "completed", notification="j:1:completed", lookup=lookup
    )


async def test_calls_to_one_receiver_share_a_kept_alive_connection(
    host: Host, receiver: Receiver, sessions: notification.CallbackSessions
) -> None:
    lookup = answering("127.0.0.1")
    for _ in range(5):
        assert await call(host, sessions, receiver.url("receiver.test"), lookup) == 200
    assert len(receiver.peers) == 5
    assert len(set(receiver.peers)) == 1, f"a connection per call: {receiver.peers}"


async def test_a_host_resolved_to_other_addresses_is_not_reached_over_the_old_connection(
    host: Host, receiver: Receiver, sessions: notification.CallbackSessions
) -> None:
    """DNS rebinding: the name now answers an address nobody listens on; the open
    connection to the address checked before must not carry the call."""
    url = receiver.url("receiver.test")
    assert await call(host, sessions, url, answering("127.0.0.1")) == 200
    assert await call(host, sessions, url, answering("127.0.0.2")) == "unreachable"
    assert len(receiver.peers) == 1


async def test_a_call_the_policy_now_refuses_is_refused_though_a_connection_is_open(
    host: Host, receiver: Receiver, sessions: notification.CallbackSessions
) -> None:
    lookup = answering("127.0.0.1")
    assert await call(host, sessions, receiver.url("receiver.test"), lookup) == 200
    host.ctx.settings = host.settings.model_copy(update={"webhook_allow_private_targets": False})
    assert await call(host, sessions, receiver.url("receiver.test"), lookup) == "refused"
    assert await call(host, sessions, receiver.url(), lookup) == "refused"
    assert len(receiver.peers) == 1


async def test_past_its_size_the_least_recently_used_session_is_closed(
    host: Host, receiver: Receiver, sessions: notification.CallbackSessions
) -> None:
    for name in ("a.test", "b.test", "a.test", "c.test", "a.test"):
        assert await call(host, sessions, receiver.url(name), answering("127.0.0.1")) == 200
    kept = {key[1] for key in sessions._sessions}
    assert kept == {"a.test", "c.test"}
    a_peers = [receiver.peers[i] for i in (0, 2, 4)]
    assert len(set(a_peers)) == 1, "the session in use was closed"


async def test_an_address_is_not_looked_up_and_still_checked(
    host: Host, receiver: Receiver, sessions: notification.CallbackSessions
) -> None:
    async def no_lookup(name: str, port: int) -> list[str]:
        raise AssertionError(f"{name} looked up")

    assert await call(host, sessions, receiver.url(), no_lookup) == 200
    host.ctx.settings = host.settings.model_copy(update={"webhook_allow_private_targets": False})
    assert await call(host, sessions, receiver.url(), no_lookup) == "refused"
    assert len(receiver.peers) == 1
