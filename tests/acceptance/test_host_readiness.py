"""``/readyz`` under load and with the database gone: pooled, bounded, generic."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlparse

import aiohttp
import asyncpg

from tests.host_support import running_host

PROBES = 200


async def backends(conn: asyncpg.Connection, database: str) -> int:
    """Sessions the server has open on ``database``."""
    return int(
        await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database)
    )


async def test_concurrent_probes_use_the_pool_not_new_connections(
    db_dsn: str, server_dsn: str
) -> None:
    database = urlparse(db_dsn).path.lstrip("/")
    async with running_host(db_dsn, relay=False) as host:
        monitor = await asyncpg.connect(server_dsn)
        try:
            before = await backends(monitor, database)
            peak = before
            done = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, await backends(monitor, database))
                    await asyncio.sleep(0.005)

            sampler = asyncio.create_task(sample())
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def probe() -> int:
                    async with session.get(host.url + "/readyz") as response:
                        await response.read()
                        return response.status

                statuses = await asyncio.gather(*(probe() for _ in range(PROBES)))
            done.set()
            await sampler
            peak = max(peak, await backends(monitor, database))
        finally:
            await monitor.close()
    assert statuses == [200] * PROBES
    assert peak - before <= host.settings.pool_max_size, (before, peak)


async def test_a_database_that_went_away_gets_a_generic_503(db_dsn: str, server_dsn: str) -> None:
    """The answer says "unavailable" and names no part of the DSN (the log has the detail)."""
    database = urlparse(db_dsn).path.lstrip("/")
    async with running_host(db_dsn, relay=False) as host:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
            async with (
                aiohttp.ClientSession() as session,
                session.get(host.url + "/readyz") as response,
            ):
                status, text = response.status, await response.text()
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await admin.close()
    assert status == 503
    assert '"unavailable"' in text
    for secret in dsn_parts(db_dsn):
        assert secret not in text, secret


def dsn_parts(dsn: str) -> set[str]:
    """What a DSN names, for a host URL and a Unix-socket one alike (whose host and port
    are query parameters, its hostname empty): an empty part is in every text."""
    url = urlparse(dsn)
    parts = {url.path.lstrip("/"), url.hostname, url.username, url.password}
    parts.add(str(url.port) if url.port else None)
    parts.update(value for values in parse_qs(url.query).values() for value in values)
    return {part for part in parts if part}
