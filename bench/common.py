"""Shared benchmark plumbing: a scratch database on one server, timing and BENCH lines."""

from __future__ import annotations

import logging
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
import structlog

import jobstore


def quiet_logs() -> None:
    """Log warnings and errors only, to stderr: per-job info lines would skew the figures."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def bench_line(metric: str, value: float, unit: str) -> None:
    """Print a figure on a line of its own, for scripts: ``BENCH <metric> <value> <unit>``."""
    print(f"BENCH {metric} {value:.6g} {unit}", flush=True)


def machine() -> str:
    """A one-line description of this machine."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct`` percentile of ``samples`` (inclusive method)."""
    return statistics.quantiles(samples, n=100, method="inclusive")[int(pct) - 1]


class Timer:
    """Wall-clock seconds since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since the timer started."""
        return time.perf_counter() - self.start


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A migrated, empty database on DATABASE_URL's server (or the embedded one); dropped after."""
    quiet_logs()
    settings = jobstore.Settings()
    async with jobstore.resolve_dsn(settings) as (server_dsn, embedded):
        admin = await asyncpg.connect(server_dsn)
        try:
            version = await admin.fetchval("SHOW server_version")
        finally:
            await admin.close()
        where = "embedded" if embedded else "DATABASE_URL"
        print(f"# PostgreSQL {version} ({where}); {machine()}", flush=True)
        async with scratch_database_on(server_dsn) as dsn:
            yield dsn


@asynccontextmanager
async def scratch_database_on(server_dsn: str) -> AsyncIterator[str]:
    """A migrated, empty database on the server of ``server_dsn``; dropped after (another
    one beside :func:`scratch_database`'s, for same-server comparisons)."""
    name = f"jobtrail_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = urlsplit(server_dsn)._replace(path=f"/{name}").geturl()
        try:
            await jobstore.migrate(dsn)
            yield dsn
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def haproxy_config(port: int, backends: list[str]) -> str:
    """An haproxy configuration balancing loopback ``port`` over ``backends`` (``host:port``).

    Each request goes to the next host that answers ``/readyz`` (checked every 500 ms, down
    after 3 failures, a check may take 2 s on a loaded machine); a request whose host
    refuses the connection is retried on another one (``redispatch``), which is how a load
    balancer in front of ``jobtrail serve`` hides a host that died.
    """
    servers = "\n".join(
        f"    server host{n} {address} check inter 500ms fall 3 rise 2"
        for n, address in enumerate(backends, start=1)
    )
    return f"""global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 2s
    retries 3
    option redispatch 1
    retry-on conn-failure

frontend jobtrail
    bind 127.0.0.1:{port}
    default_backend hosts

backend hosts
    balance roundrobin
    option httpchk GET /readyz
    http-reuse always
{servers}
"""
