"""Running qstash_local in-process on a host and port, as an async context manager."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from aiohttp import web

from qstash_local.api.context import LIMITER, STATE
from qstash_local.app import make_app
from qstash_local.config import Config
from qstash_local.limits import Limiter
from qstash_local.state import State


@dataclasses.dataclass(frozen=True, slots=True)
class Server:
    """A running qstash_local: its base URL (use it as ``QSTASH_URL``) and its app."""

    url: str
    host: str
    port: int
    app: web.Application

    @property
    def state(self) -> State:
        """The server's in-memory state (for inspection in tests and tools)."""
        return self.app[STATE]

    @property
    def limiter(self) -> Limiter:
        """The server's rate limit and quota (``throttle`` makes it answer 429 for a while)."""
        return self.app[LIMITER]


@contextlib.asynccontextmanager
async def serve(
    config: Config | None = None, *, host: str = "127.0.0.1", port: int = 8080
) -> AsyncIterator[Server]:
    """Serve qstash_local on ``host:port`` (port 0 picks a free one) until the block exits."""
    app = make_app(config or Config())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        url_host = f"[{host}]" if ":" in host else host
        yield Server(f"http://{url_host}:{bound_port}", host, bound_port, app)
    finally:
        await runner.cleanup()
