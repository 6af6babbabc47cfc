"""``jobtrail serve``: the host, its relay and sweeper, on the embedded defaults or for real.

Without ``DATABASE_URL`` it starts the embedded PostgreSQL; without ``QSTASH_TOKEN`` it runs
qstash_local in-process (deliveries then come back to this host).  SIGTERM or SIGINT stop
it gracefully: no new deliveries, in-flight handlers finish within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog
import typer
from aiohttp import web
from pydantic import SecretStr
from qstash import AsyncQStash
from qstash.errors import QStashError

import jobstore
import projections
import qstash_local
from jobstore import JobRegistry, Settings
from workers.cli import runtime

log = structlog.get_logger("jobtrail.serve")


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""
    app.command("serve")(serve)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    qstash_port: int = typer.Option(
        0, help="Port of the in-process qstash_local (0 picks a free one)."
    ),
    no_qstash: bool = typer.Option(
        False, "--no-qstash", help="Do not start qstash_local; use QSTASH_URL/QSTASH_TOKEN."
    ),
    retry_delay_scale: float = typer.Option(
        1.0, help="In-process qstash_local only: scale QStash's retry delays (demos, tests)."
    ),
    grace: float = typer.Option(30.0, help="Seconds in-flight handlers get on shutdown."),
) -> None:
    """Run the jobtrail host until SIGTERM or Ctrl-C."""
    settings = runtime.load_settings()
    registry = runtime.application_registry(settings)
    runtime.run(
        lambda: _serve(
            settings, registry, host, port, qstash_port, no_qstash, retry_delay_scale, grace
        )
    )


async def _serve(
    settings: Settings,
    registry: JobRegistry,
    host: str,
    port: int,
    qstash_port: int,
    no_qstash: bool,
    scale: float,
    grace: float,
) -> None:
    from workers import builtin  # the host loads only when it is started
    from workers.app import make_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    local_qstash = not no_qstash and settings.qstash_token is None
    settings = _public(settings, host, port)
    if local_qstash:
        settings = _private_local_secrets(settings)
    _refuse_unsafe(settings, host, registry, local_qstash)
    async with contextlib.AsyncExitStack() as stack:
        dsn, embedded = await stack.enter_async_context(jobstore.resolve_dsn(settings))
        await jobstore.migrate(dsn)
        settings = _with_api_token(settings)
        if local_qstash:
            settings = await stack.enter_async_context(_local_qstash(settings, qstash_port, scale))
        elif not settings.qstash_url and not settings.qstash_token:
            runtime.fail("--no-qstash needs QSTASH_URL (and QSTASH_TOKEN for Upstash)")
        else:
            await _check_qstash(settings)
        app = make_app(
            settings,
            registry=builtin.registry_with_handlers(settings, registry=registry),
            options=_options(settings, listen_host=host),
            dsn=dsn,
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace, handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            runtime.fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        projections.settle_for_serving()
        where = f"embedded PostgreSQL in {settings.pgdata_dir}" if embedded else "DATABASE_URL"
        typer.echo(
            f"jobtrail host on {settings.public_url} (database: {where}; "
            f"QStash: {settings.qstash_url or 'Upstash'})",
            err=True,
        )
        await stop.wait()
        typer.echo("stopping: finishing in-flight deliveries", err=True)
    typer.echo("stopped", err=True)


async def _check_qstash(settings: Settings) -> None:
    """Refuse to start with a token QStash rejects; only warn when QStash is unreachable."""
    token = _secret(settings.qstash_token) or qstash_local.DEV_TOKEN
    client = AsyncQStash(token, base_url=settings.qstash_url, retry=False)
    where = settings.qstash_url or "Upstash QStash"
    try:
        await client.signing_key.get()
    except QStashError as exc:
        if "401" in str(exc) or "403" in str(exc):
            runtime.fail(
                f"QStash at {where} rejected QSTASH_TOKEN (unauthorized); "
                "check the token (and QSTASH_URL)"
            )
        log.warning("QStash answered with an error at start-up", error=str(exc)[:200])
    except (httpx.HTTPError, OSError) as exc:
        typer.echo(
            f"warning: QStash at {where} is unreachable ({exc}); jobs are recorded "
            "and published once it is back",
            err=True,
        )
    finally:
        await client.http._client.aclose()


def _with_api_token(settings: Settings) -> Settings:
    """Settings with API tokens: the configured ones, else one generated and kept in a file.

    The generated token (every scope, named 'default') lives in an owner-only file and is
    reused on the next start; it is printed only when stderr is a terminal, never logged.
    """
    kept = runtime.kept_api_token(settings)
    if kept is None:
        return settings
    settings, path, created = kept
    made = "generated" if created else "kept"
    where = f"API token for {settings.public_url}/api/v1 {made} in {path} (owner-only; set "
    where += "JOBTRAIL_API_TOKENS to choose your own)"
    typer.echo(where + runtime.shown_secret(settings.api_token), err=True)
    return settings


def _private_local_secrets(settings: Settings) -> Settings:
    """Fresh signing keys and token for the in-process qstash_local, unless configured.

    Nothing outside this process knows them, so no one can forge a delivery, even when
    the host listens on a public address.
    """
    fresh: dict[str, Any] = {
        name: SecretStr(qstash_local.new_signing_key())
        for name in ("qstash_current_signing_key", "qstash_next_signing_key")
        if name not in settings.model_fields_set
    }
    fresh["qstash_token"] = SecretStr(secrets.token_urlsafe(32))
    return settings.model_copy(update=fresh)


def _refuse_unsafe(
    settings: Settings, host: str, registry: JobRegistry, local_qstash: bool
) -> None:
    """Stop with one line when the configuration would trust published secrets."""
    from workers import retention, safety

    checked = (
        settings.model_copy(update={"qstash_url": "http://127.0.0.1"}) if local_qstash else settings
    )
    problem = safety.unsafe_configuration(
        checked,
        listen_host=host,
        webhooks=jobstore.JOB_TYPES.PROCESS_WEBHOOK in registry.types(),
    )
    problem = problem or retention.configuration_problem(settings)
    if problem:
        runtime.fail(problem)


def _public(settings: Settings, host: str, port: int) -> Settings:
    """Default the public URL to where this host listens, unless it was configured."""
    if "public_url" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"public_url": f"http://{host}:{port}"})


@contextlib.asynccontextmanager
async def _local_qstash(settings: Settings, port: int, scale: float) -> AsyncIterator[Settings]:
    config = qstash_local.Config(
        token=_secret(settings.qstash_token) or qstash_local.DEV_TOKEN,
        current_signing_key=settings.qstash_current_signing_key.get_secret_value(),
        next_signing_key=settings.qstash_next_signing_key.get_secret_value(),
        retry_delay_scale=scale,
    )
    try:
        async with qstash_local.serve(config, host="127.0.0.1", port=port) as server:
            yield settings.model_copy(
                update={"qstash_url": server.url, "qstash_token": SecretStr(config.token)}
            )
    except OSError as exc:
        runtime.fail(f"cannot start qstash_local on port {port}: {exc.strerror or exc}")


def _options(settings: Settings, *, listen_host: str) -> Any:
    from workers import retention
    from workers.app import HostOptions
    from workers.sweeper import SweeperConfig

    return HostOptions(
        listen_host=listen_host,
        extra_background=(retention.schedule,) if retention.enabled(settings) else (),
        relay_config=jobstore.RelayConfig(
            public_url=settings.public_url,
            reconcile_interval=settings.reconcile_interval_seconds,
        ),
        sweeper_config=SweeperConfig(
            interval=settings.sweep_interval_seconds, min_age=settings.sweep_min_age_seconds
        ),
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
