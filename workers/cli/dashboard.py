"""``jobtrail dashboard``: the operator dashboard alone, against any jobtrail database.

It runs next to the workers rather than inside them: no relay, no handlers, only the
pages (and its own connection pool).  Sign in with one of the API tokens; with none
configured, the token ``jobtrail serve`` keeps in its data folder is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer
from aiohttp import web

import jobstore
import projections
from jobstore import Settings
from workers.cli import runtime


def register(app: typer.Typer) -> None:
    """Add the ``dashboard`` command to ``app``."""
    app.command("dashboard")(dashboard)


def dashboard(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
) -> None:
    """Serve the operator dashboard until Ctrl-C."""
    settings = runtime.load_settings()
    registry = runtime.application_registry(settings)
    runtime.run(lambda: _serve(settings, registry, host, port))


def _with_token(settings: Settings) -> Settings:
    kept = runtime.kept_api_token(settings)
    if kept is None:
        return settings
    settings, path, _created = kept
    shown = runtime.shown_secret(settings.api_token)
    typer.echo(f"sign in with the API token kept in {path}{shown}", err=True)
    return settings


async def _serve(settings: Settings, registry: jobstore.JobRegistry, host: str, port: int) -> None:
    from workers.dashboard import make_dashboard

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    settings = _with_token(settings)
    async with contextlib.AsyncExitStack() as stack:
        dsn, _embedded = await stack.enter_async_context(jobstore.resolve_dsn(settings))
        access = projections.Access.from_settings(settings, host)
        app = make_dashboard(settings, access=access, dsn=dsn, registry=registry, standalone=True)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5, handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            runtime.fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        typer.echo(f"jobtrail dashboard on http://{host}:{port}/", err=True)
        await stop.wait()
