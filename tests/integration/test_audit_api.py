"""The audit API (admin scope): the verification report and the signed anchors, over HTTP."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import jobstore
import projections
from jobstore import audit
from tests.events import Noted

ADMIN = "admin-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
TOKENS = [
    projections.token.token("root", ADMIN, "admin"),
    projections.token.token("ops-bot", OPERATOR, "operate"),
]
KEY = audit.AuditKey(b"api-test-audit-key-0123456789")


async def test_verify_and_anchors_over_http_need_the_admin_scope(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    for n in range(3):
        await store.append(f"notes-{n}", [Noted(n=n)])
    made = await audit.Anchorer(pool, db_dsn, KEY).anchor_through()
    host = web.Application()
    host.add_subapp("/api/v1", projections.api_app(TOKENS))
    host[projections.API_CONTEXT] = projections.ApiContext(pool, jobstore.Dispatcher(store))
    host[projections.AUDIT_KEY] = KEY

    async with TestClient(TestServer(host)) as client:

        async def get(path: str, token: str = ADMIN) -> tuple[int, object]:
            headers = {"Authorization": f"Bearer {token}"}
            async with client.get("/api/v1" + path, headers=headers) as response:
                return response.status, await response.json()

        status, report = await get("/audit/verify")
        assert status == 200
        assert isinstance(report, dict) and report["intact"] is True
        assert report["events_checked"] == 3 and report["last_anchor"] == made[-1].seq

        status, page = await get("/audit/anchors?after=0&limit=1")
        assert status == 200 and isinstance(page, dict)
        assert [audit.Anchor.from_json(a) for a in page["items"]] == made[:1]

        status, refused = await get("/audit/verify", OPERATOR)
        assert status == 403 and isinstance(refused, dict) and "admin" in refused["error"]
        status, bad = await get("/audit/verify?from=-1")
        assert status == 400 and isinstance(bad, dict) and "from" in bad["error"]
        status, bad = await get("/audit/anchors?limit=0")
        assert status == 400 and isinstance(bad, dict) and "limit" in bad["error"]

        conn = await asyncpg.connect(db_dsn)
        try:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("DELETE FROM jobtrail.events WHERE stream_id = 'notes-1'")
        finally:
            await conn.close()
        status, report = await get("/audit/verify")
        assert status == 200 and isinstance(report, dict) and report["intact"] is False
        assert report["first_break"]["stream_id"] == "notes-1"


async def test_verify_over_http_checks_anchors_of_the_previous_keys_from_the_settings(
    store: jobstore.EventStore, pool: asyncpg.Pool, db_dsn: str
) -> None:
    """The host's key comes from the settings: JOBTRAIL_AUDIT_PREVIOUS_KEYS verifies the
    anchors they signed; without it the report names them as unchecked."""
    await store.append("notes-0", [Noted(n=0)])
    await audit.Anchorer(pool, db_dsn, KEY).anchor_through()
    await store.append("notes-1", [Noted(n=1)])
    rotated = jobstore.Settings(
        audit_key="api-test-new-audit-key-0123456789",
        audit_previous_keys=KEY.secret.decode(),
    )
    new_key = audit.AuditKey.from_settings(rotated)
    handed_over = await audit.Anchorer(pool, db_dsn, new_key).anchor_through()
    assert handed_over[0].handover() is not None

    for key, intact, unchecked in (
        (new_key, True, []),
        (audit.AuditKey(new_key.secret), False, [1, 2]),
    ):
        host = web.Application()
        host.add_subapp("/api/v1", projections.api_app(TOKENS))
        host[projections.API_CONTEXT] = projections.ApiContext(pool, jobstore.Dispatcher(store))
        host[projections.AUDIT_KEY] = key
        async with TestClient(TestServer(host)) as client:
            headers = {"Authorization": f"Bearer {ADMIN}"}
            async with client.get("/api/v1/audit/verify", headers=headers) as response:
                assert response.status == 200
                report = await response.json()
        assert report["intact"] is intact, report
        assert report["unchecked_anchors"] == unchecked
        assert all(b["unchecked"] for b in report["breaks"])
