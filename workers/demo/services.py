"""The demo's stand-ins for the outside world: an SMTP server and a webhook receiver.

Both run on this event loop, on free loopback ports, and behave on purpose: some
addresses bounce, some endpoints fail once, fail until replayed, or are slow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

BOUNCE_PREFIX = "bounce"


class MailSink:
    """An SMTP handler that keeps messages and refuses ``bounce…@`` recipients (550)."""

    def __init__(self) -> None:
        self.delivered = 0

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept a recipient, unless it is one of the demo's bouncing addresses."""
        if address.lower().startswith(BOUNCE_PREFIX):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message (count it)."""
        self.delivered += 1
        return "250 Message accepted for delivery"


@dataclass
class WebhookReceiver:
    """Endpoints: ok, flaky (fails each dispatch's first attempt), broken (fails the first
    dispatch, works after a replay), slow (hangs on the first dispatch)."""

    attempts: Counter[str] = field(default_factory=Counter)
    received: int = 0

    def app(self) -> web.Application:
        """The receiver's aiohttp application."""
        app = web.Application()
        app.router.add_post("/hooks/{kind}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        """Answer as the endpoint's kind says."""
        await request.read()
        self.received += 1
        key = request.headers.get("Idempotency-Key", "")
        first_dispatch = key.endswith(":1")
        self.attempts[key] += 1
        kind = request.match_info["kind"]
        if kind == "flaky" and self.attempts[key] == 1:
            return web.Response(status=503, text="temporarily overloaded")
        if kind == "broken" and first_dispatch:
            return web.Response(status=400, text="schema mismatch (fixed after a deploy)")
        if kind == "slow" and first_dispatch:
            await asyncio.sleep(30)
        return web.json_response({"ok": True})


@dataclass
class Services:
    """Where the demo's stand-ins listen."""

    smtp_port: int
    webhook_base: str
    mail: MailSink
    hooks: WebhookReceiver


@contextlib.asynccontextmanager
async def running_services() -> AsyncIterator[Services]:
    """Start the SMTP sink and the webhook receiver; stop both afterwards."""
    mail = MailSink()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(mail), "127.0.0.1", 0)
    hooks = WebhookReceiver()
    runner = web.AppRunner(hooks.app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        smtp_port = _port(smtp.sockets[0].getsockname())
        yield Services(smtp_port, f"http://127.0.0.1:{_port(runner.addresses[0])}", mail, hooks)
    finally:
        await runner.cleanup()
        smtp.close()
        await smtp.wait_closed()


def _port(address: Any) -> int:
    return int(address[1])
