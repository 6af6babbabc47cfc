"""Who may reach a host's API and probes: scoped tokens, loopback-only open probes,
and the token ``jobtrail serve`` generates when none is configured."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

import jobstore
from tests.processes import serve_stack
from workers import HostOptions, make_app

READER = "reader-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
TOKENS = f"dash:read:{READER},ops-bot:operate:{OPERATOR}"
# A host off loopback must bring its own secrets (workers/safety.py).
PRODUCTION_SECRETS = {
    "qstash_url": "https://qstash.example.com",
    "qstash_token": "a-production-token-of-ours",
    "qstash_current_signing_key": "sig_ProdCurrentKeyProdCurrentKey1",
    "qstash_next_signing_key": "sig_ProdNextKeyProdNextKeyProdNe",
    "webhook_signing_secret": "a-long-random-webhook-secret-of-ours",
    "data_key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    "audit_key": "a-long-random-audit-key-of-ours",
}


@contextlib.asynccontextmanager
async def host(db_dsn: str, listen_host: str, **settings: Any) -> AsyncIterator[str]:
    """A host built for ``listen_host`` (served on loopback for the test); its URL."""
    secrets = {} if listen_host == "127.0.0.1" else PRODUCTION_SECRETS
    app = make_app(
        jobstore.Settings(database_url=db_dsn, api_tokens=TOKENS, **secrets, **settings),
        dsn=db_dsn,
        options=HostOptions(relay=False, sweeper=False, projections=False, listen_host=listen_host),
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        await r.read()
        return r.status


PROBES = ("/metrics", "/api/v1/openapi.json")


async def test_probes_are_open_on_a_loopback_host(db_dsn: str) -> None:
    async with host(db_dsn, "127.0.0.1") as url:
        assert [await get(url + p) for p in PROBES] == [200, 200]
        assert await get(url + "/api/v1/jobs") == 401


async def test_probes_need_a_read_token_on_a_public_host_even_from_loopback(db_dsn: str) -> None:
    async with host(db_dsn, "0.0.0.0") as url:
        assert [await get(url + p) for p in PROBES] == [401, 401]
        assert [await get(url + p, "wrong-token-0123456789") for p in PROBES] == [401, 401]
        assert [await get(url + p, READER) for p in PROBES] == [200, 200]
        assert await get(url + "/api/v1/jobs", READER) == 200


async def test_public_metrics_setting_overrides_the_listening_address(db_dsn: str) -> None:
    async with host(db_dsn, "0.0.0.0", public_metrics=True) as url:
        assert [await get(url + p) for p in PROBES] == [200, 200]
    async with host(db_dsn, "127.0.0.1", public_metrics=False) as url:
        assert [await get(url + p) for p in PROBES] == [401, 401]


@pytest.mark.slow
async def test_serve_generates_an_owner_only_token_once_and_never_logs_it(
    db_dsn: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    async with serve_stack(db_dsn, tmp_path, JOBTRAIL_DATA_DIR=str(data)) as stack:
        path = data / "api-token"
        token = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(token) >= 32
        assert await get(stack.host_url + "/api/v1/jobs", token) == 200
        assert await get(stack.host_url + "/api/v1/jobs") == 401
        stack.serve.terminate()
        stack.serve.start()
        await stack.wait_host()
        assert path.read_text().strip() == token, "a restart keeps the token"
        assert await get(stack.host_url + "/api/v1/jobs", token) == 200
        log = stack.serve.output()
        assert token not in log
        assert f"in {path}" in log
