"""The demo, start to finish: every component on loopback, a job mix, replay, and a summary."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import jobstore
import projections
import qstash_local
from jobstore import Settings
from workers import builtin
from workers.app import HostOptions, make_app
from workers.demo import scenario, show
from workers.demo.services import Services, running_services
from workers.handlers import StripeRouter

FINISHED = ("completed", "failed", "cancelled")


async def run_demo(settings: Settings, console: Console, *, keep: bool = False) -> None:
    """Run the whole demo; every server it starts is stopped before it returns.

    With ``keep``, everything stays up after the story until SIGINT or SIGTERM, so the
    dashboard (its address and sign-in token are printed) can be looked around.
    """
    console.rule("[bold]jobtrail demo")
    console.print(
        "starting PostgreSQL, the local QStash, an SMTP server, a webhook "
        "receiver and the jobtrail host…"
    )
    async with (
        _demo_database(settings) as dsn,
        running_services() as services,
        qstash_local.serve(qstash_local.Config(retry_delay_scale=0.01), port=0) as qstash,
    ):
        with tempfile.TemporaryDirectory(prefix="jobtrail-demo-") as exports:
            demo = _settings(settings, dsn, qstash.url, services, Path(exports))
            async with _host(demo, dsn) as registry:
                _show_dashboard(console, demo)
                await _story(console, demo, dsn, registry, services)
                if keep:
                    await _wait_for_stop(console, demo)


def _show_dashboard(console: Console, settings: Settings) -> None:
    assert settings.api_token is not None
    token = settings.api_token.get_secret_value() if console.is_terminal else "(on a terminal)"
    console.print(
        f"dashboard: [bold]{settings.public_url}/[/] (sign in with this run's token {token})"
    )


async def _wait_for_stop(console: Console, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    console.print(
        f"--keep: everything stays up; the dashboard is at {settings.public_url}/ — "
        "Ctrl-C stops it all"
    )
    await stop.wait()


async def _story(
    console: Console,
    settings: Settings,
    dsn: str,
    registry: jobstore.JobRegistry,
    services: Services,
) -> None:
    pool = await jobstore.create_pool(dsn, min_size=1, max_size=4)
    try:
        policy = jobstore.AddressPolicy.from_settings(settings)
        dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool), registry, policy)
        job_type, cron, payload = scenario.schedule_spec()
        schedule_id = await dispatcher.schedule(job_type, cron, payload)
        console.print(f"scheduled [bold]{job_type}[/] at '{cron}' as {schedule_id}")
        jobs = scenario.job_mix(services.webhook_base)
        await dispatcher.enqueue_many(jobs)
        console.print(f"enqueued [bold]{len(jobs)}[/] jobs across the six job types")
        await _follow(console, pool, len(jobs), "running")
        stats = await projections.get_job_stats(pool)
        console.print(show.status_table(stats, "after the first run"))
        await _show_a_failure(console, pool, dispatcher)
        outcome = await projections.replay_jobs(
            pool,
            dispatcher,
            projections.JobFilter(status=jobstore.JOB_STATUSES.FAILED),
            reason="demo replay",
        )
        console.print(f"replayed [bold]{outcome.count}[/] failed jobs (history kept)")
        await projections.wait_for_position(pool, outcome.position, timeout=30)
        await _follow(console, pool, len(jobs), "replaying")
        console.print(show.status_table(await projections.get_job_stats(pool), "final"))
        console.print(
            f"emails accepted by the SMTP server: {services.mail.delivered}; "
            f"webhook requests received: {services.hooks.received}"
        )
    finally:
        await pool.close()


async def _follow(console: Console, pool: asyncpg.Pool, total: int, label: str) -> None:
    """A live progress bar until every job has finished (read from the views)."""
    columns = (
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + 120
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=total, detail="")
        while True:
            stats = await projections.get_job_stats(pool)
            done = sum(stats.by_status.get(s, 0) for s in FINISHED)
            detail = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_status.items()) if v)
            progress.update(task, completed=done, detail=detail)
            if done >= total or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.25)


async def _show_a_failure(
    console: Console, pool: asyncpg.Pool, dispatcher: jobstore.Dispatcher
) -> None:
    page = await projections.list_job_executions(
        pool, status="failed", type="process-webhook", limit=1
    )
    if not page.items:
        return
    job_id = page.items[0].job_id
    history = await projections.get_job_history(dispatcher.store, job_id)
    console.print(show.timeline(job_id, history))


def _settings(
    base: Settings, dsn: str, qstash_url: str, services: Services, exports: Path
) -> Settings:
    port = _free_port()
    return base.model_copy(
        update={
            "database_url": dsn,
            "public_url": f"http://127.0.0.1:{port}",
            "qstash_url": qstash_url,
            "qstash_token": SecretStr(qstash_local.DEV_TOKEN),
            "smtp_host": "127.0.0.1",
            "smtp_port": services.smtp_port,
            "smtp_tls": "none",
            "webhook_allow_private_targets": True,
            "webhook_allowed_ports": "*",
            "export_dir": exports,
            "stripe_webhook_secret": SecretStr(scenario.STRIPE_SECRET),
            "api_token": SecretStr(secrets.token_urlsafe(24)),  # this run's dashboard sign-in
            "lease_grace_seconds": 1.0,
        }
    )


@contextlib.asynccontextmanager
async def _host(settings: Settings, dsn: str) -> AsyncIterator[jobstore.JobRegistry]:
    router = StripeRouter()
    for event_type in ("invoice.paid", "customer.created"):
        router.register(event_type, _acknowledge)
    registry = builtin.registry_with_handlers(
        settings, registry=scenario.demo_registry(), stripe_router=router
    )
    app = make_app(settings, registry=registry, dsn=dsn, options=HostOptions(sweeper=False))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
    await runner.setup()
    try:
        port = urlsplit(settings.public_url).port
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield registry
    finally:
        await runner.cleanup()


async def _acknowledge(event: dict[str, object], job: jobstore.BaseJob) -> dict[str, object]:
    return {"handled": event.get("type")}


@contextlib.asynccontextmanager
async def _demo_database(settings: Settings) -> AsyncIterator[str]:
    """A fresh database for the demo on the configured server; dropped afterwards."""
    async with jobstore.resolve_dsn(settings) as (server_dsn, _embedded):
        name = f"jobtrail_demo_{uuid.uuid4().hex[:10]}"
        admin = await jobstore.connect(server_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')  # our own generated name
            dsn = urlsplit(server_dsn)._replace(path=f"/{name}").geturl()
            await jobstore.migrate(dsn)
            yield dsn
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
