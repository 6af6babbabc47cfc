"""The host anchors the log by itself, one host at a time; the dev audit key stays on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

import jobstore
from jobstore import audit, audit_verify
from tests.events import Noted
from workers import HostOptions, make_app
from workers.safety import UnsafeConfigurationError

KEY = "host-test-audit-key-0123456789abcdef"


@contextlib.asynccontextmanager
async def host(db_dsn: str) -> AsyncIterator[web.Application]:
    settings = jobstore.Settings(
        database_url=db_dsn, audit_key=KEY, audit_anchor_interval_seconds=0.05
    )
    options = HostOptions(
        relay=False, notifier=False, sweeper=False, projections=False, dashboard=False
    )
    runner = web.AppRunner(make_app(settings, options=options, dsn=db_dsn))
    await runner.setup()
    try:
        yield runner.app
    finally:
        await runner.cleanup()


async def anchored_up_to(pool: asyncpg.Pool, position: int, within: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (await pool.fetchval(_COVERED) or 0) < position:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no anchor covered position {position} within {within} s")
        await asyncio.sleep(0.05)


_COVERED = "SELECT max(cursor_position) FROM jobtrail.audit_anchors"


async def test_two_hosts_anchor_the_log_one_at_a_time(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    async with host(db_dsn), host(db_dsn):
        for n in range(3):
            (position,) = await store.append(f"notes-{n}", [Noted(n=n)])
            await anchored_up_to(pool, position)
        (position,) = await store.append("notes-0", [Noted(n=9)])
        await anchored_up_to(pool, position)

    seqs = [r[0] for r in await pool.fetch("SELECT seq FROM jobtrail.audit_anchors ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    report = await audit_verify.verify(pool, audit.AuditKey(KEY.encode()))
    assert report.intact, report.breaks
    assert report.unanchored_events == 0


def test_the_dev_audit_key_refuses_a_public_host() -> None:
    production = jobstore.Settings(
        qstash_url="https://qstash.example.com",
        qstash_token="a-production-token-of-ours",
        qstash_current_signing_key="sig_ProdCurrentKeyProdCurrentKey1",
        qstash_next_signing_key="sig_ProdNextKeyProdNextKeyProdNe",
        webhook_signing_secret="a-long-random-webhook-secret-of-ours",
        data_key="AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    )
    with pytest.raises(UnsafeConfigurationError, match="set JOBTRAIL_AUDIT_KEY"):
        make_app(production, options=HostOptions(listen_host="0.0.0.0"))
    make_app(
        production.model_copy(update={"audit_key": jobstore.Settings(audit_key=KEY).audit_key}),
        options=HostOptions(listen_host="0.0.0.0"),
    )
