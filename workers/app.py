"""``make_app(settings)``: the aiohttp host — job endpoints, failure callback, health, metrics.

Pools, sessions and background tasks (relay, sweeper, projections) are owned by the app's
cleanup context: started with it, cancelled and awaited when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import aiohttp
import asyncpg
import structlog
from aiohttp import web
from qstash import AsyncQStash

import jobstore
import projections
from jobstore import JobRegistry, Settings, audit
from workers import builtin, callback, dashboard, health, notification, outage, safety
from workers.context import HOST, HostContext
from workers.decision import Answer
from workers.metrics import Metrics
from workers.supervisor import Supervisor
from workers.sweeper import Sweeper, SweeperConfig
from workers.verification import Verifier
from workers.worker import create_job_worker, respond

log = structlog.get_logger("jobtrail.host")
API_PREFIX = "/api/v1"
SHUTDOWN_WAIT_SECONDS = 10.0
MAX_BODY_BYTES = 1024 * 1024 + 64 * 1024  # QStash's 1 MiB message limit, plus headroom
Background = Callable[[HostContext], Awaitable[None]]


@dataclass(frozen=True)
class HostOptions:
    """What a host runs besides answering deliveries."""

    relay: bool = True
    notifier: bool = True
    sweeper: bool = True
    projections: bool = True
    audit_anchors: bool = True
    """Anchor the log's stream heads every JOBTRAIL_AUDIT_ANCHOR_INTERVAL (one host at a time)."""
    sweeper_config: SweeperConfig = field(default_factory=SweeperConfig)
    relay_config: jobstore.RelayConfig | None = None
    extra_background: tuple[Background, ...] = ()
    listen_host: str = "127.0.0.1"
    """The address ``serve --host`` listens on: loopback keeps /metrics and the API
    document open without a token (unless JOBTRAIL_PUBLIC_METRICS says otherwise)."""
    dashboard: bool = True
    """Serve the operator dashboard at ``/`` (needs API tokens to sign in with)."""


def make_app(
    settings: Settings,
    *,
    registry: JobRegistry | None = None,
    options: HostOptions | None = None,
    dsn: str | None = None,
) -> web.Application:
    """Build the host for ``settings`` (``dsn`` overrides the database it opens)."""
    options = options or HostOptions()
    registry = registry or builtin.registry_with_handlers(settings)
    problem = safety.unsafe_configuration(
        settings,
        listen_host=options.listen_host,
        webhooks=jobstore.JOB_TYPES.PROCESS_WEBHOOK in registry.types(),
    )
    if problem:
        raise safety.UnsafeConfigurationError(problem)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_json_errors])
    for job_type in registry.types():
        spec = registry.get(job_type)
        app.router.add_post(spec.config.endpoint, create_job_worker())
    app.router.add_post(jobstore.envelope.FAILURE_CALLBACK_PATH, callback.failure_callback)
    notification.mount(app)
    health.add_routes(app)
    access = projections.Access.from_settings(settings, options.listen_host)
    app[projections.API_ACCESS] = access
    app[projections.AUDIT_KEY] = audit.AuditKey.from_settings(settings)
    if access.tokens:
        api = projections.api_app(
            access.tokens,
            public_docs=access.public_probes,
            statement_timeout=settings.api_statement_timeout_seconds,
        )
        app.add_subapp(API_PREFIX, api)
        if options.dashboard:
            dashboard.mount(app, dashboard.make_dashboard(settings, access=access))
    app.cleanup_ctx.append(_lifecycle(settings, registry, options, dsn))
    return app


def _lifecycle(
    settings: Settings, registry: JobRegistry, options: HostOptions, dsn: str | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            resolved = dsn or (await stack.enter_async_context(jobstore.resolve_dsn(settings)))[0]
            jobstore.keyring.configure(settings)
            pool = await jobstore.create_pool(
                resolved, min_size=settings.pool_min_size, max_size=settings.pool_max_size
            )
            stack.push_async_callback(_close_pool, pool)
            http = aiohttp.ClientSession()
            stack.push_async_callback(http.close)
            store = jobstore.EventStore(pool, ride_out=settings.database_ride_out_seconds)
            ctx = HostContext(
                settings=settings,
                store=store,
                dsn=resolved,
                dispatcher=jobstore.Dispatcher(
                    store, registry, jobstore.AddressPolicy.from_settings(settings)
                ),
                registry=registry,
                verifier=Verifier.from_settings(settings),
                metrics=Metrics(),
                http=http,
                qstash=_qstash_client(settings),
            )
            if ctx.qstash is not None:
                stack.push_async_callback(ctx.qstash.http._client.aclose)
            app[HOST] = ctx
            app[projections.API_CONTEXT] = projections.ApiContext(pool, ctx.dispatcher)
            ctx.supervisor = _start_background(ctx, options)
            try:
                yield
            finally:
                ctx.accepting = False
                stuck = await ctx.supervisor.stop(SHUTDOWN_WAIT_SECONDS)
                if stuck:
                    log.warning("background tasks did not stop in time", tasks=stuck)

    return lifecycle


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close the pool; connections still held after the wait are terminated, not waited for."""
    try:
        await asyncio.wait_for(pool.close(), SHUTDOWN_WAIT_SECONDS)
    except TimeoutError:
        log.warning("database connections still in use at shutdown; terminating them")
        pool.terminate()


def _qstash_client(settings: Settings) -> AsyncQStash | None:
    if not settings.qstash_url and not settings.qstash_token:
        return None
    token = (
        settings.qstash_token.get_secret_value()
        if settings.qstash_token is not None
        else jobstore.settings.DEV_QSTASH_TOKEN
    )
    return AsyncQStash(token, base_url=settings.qstash_url, retry=False)


def notifier_for(ctx: HostContext, options: HostOptions) -> jobstore.Notifier:
    """The notifier of this host, following the log like its relay."""
    assert ctx.qstash is not None, "notifications go through QStash"
    relay = options.relay_config or jobstore.RelayConfig(public_url=ctx.settings.public_url)
    config = jobstore.NotifierConfig(
        public_url=relay.public_url,
        follower=jobstore.follower.FollowerConfig(
            idle_poll=relay.idle_poll,
            leader_retry=relay.leader_retry,
            linger=jobstore.notifier.LINGER,
        ),
    )
    return jobstore.Notifier(ctx.store, ctx.dsn, ctx.qstash, config)


def _start_background(ctx: HostContext, options: HostOptions) -> Supervisor:
    """Start the host's background tasks under a supervisor that restarts them when they die.

    Each restart builds the task afresh (a new relay, runner…): whatever state the dead
    one held is gone with it; they all resume from their checkpoints in the database.
    """
    supervisor = Supervisor(ctx.metrics, ctx.store.pool)
    qstash = ctx.qstash
    if options.relay and qstash is not None:
        config = options.relay_config or jobstore.RelayConfig(public_url=ctx.settings.public_url)
        limits = ctx.qstash_limits
        supervisor.start(
            "relay",
            lambda: jobstore.Relay(ctx.store, ctx.dsn, qstash, config, limits=limits).run(),
            detail=limits.to_json,
        )
    if options.notifier and qstash is not None:
        supervisor.start("notifier", lambda: notifier_for(ctx, options).run())
    if options.sweeper and qstash is not None:
        supervisor.start("sweeper", lambda: Sweeper(ctx, options.sweeper_config).run())
    if options.audit_anchors:
        key = audit.AuditKey.from_settings(ctx.settings)
        every = audit.AnchorConfig(ctx.settings.audit_anchor_interval_seconds)
        supervisor.start(  # not required: a host whose anchoring stops still serves jobs
            "audit-anchors",
            lambda: audit.Anchorer(ctx.store.pool, ctx.dsn, key, every).run(),
            required=False,
        )
    if options.projections:
        supervisor.start(
            "projections",
            lambda: projections.ProjectionRunner(ctx.store.pool, ctx.dsn).run(),
        )
    for extra in options.extra_background:
        name = getattr(extra, "__name__", "background")
        supervisor.start(name, partial(extra, ctx), required=False)
    supervisor.start_reporting()
    return supervisor


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error is JSON with a clear message; never a traceback, never an HTML page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason
        if exc.status == 413:
            reason = f"request body is larger than {MAX_BODY_BYTES} bytes"
        return respond(Answer(exc.status, reason))
    except Exception as exc:
        unavailable = outage.answer_for(exc)
        if unavailable is not None:
            log.warning("database unavailable", path=request.path, error=type(exc).__name__)
            return respond(unavailable)
        log.exception("unexpected error", path=request.path)
        return respond(Answer(500, "internal error; see the host's log"))
