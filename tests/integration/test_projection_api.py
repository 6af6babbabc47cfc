"""The read/ops HTTP API, mounted at /api/v1 as the host would: the whole status matrix."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import jobstore
import projections
from tests.projection_support import append, dispatched, failed, new_job_id, started

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READER = "reader-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
TOKENS = [
    projections.token.token("default", TOKEN, "admin"),
    projections.token.token("dash", READER, "read"),
    projections.token.token("ops-bot", OPERATOR, "operate"),
]
CLEANUP = {"retention": 30}


class Api:
    """An HTTP client of the API, plus the pieces behind it."""

    def __init__(self, client: TestClient[Any, Any], pool: asyncpg.Pool, dsn: str) -> None:
        """An API client for ``client`` with the pool and database behind it."""
        self.client, self.pool, self.dsn = client, pool, dsn
        self.dispatcher = jobstore.Dispatcher(jobstore.EventStore(pool))

    async def call(
        self, method: str, path: str, *, auth: bool = True, **kwargs: Any
    ) -> tuple[int, Any]:
        token = kwargs.pop("token", TOKEN)
        headers = {**({"Authorization": f"Bearer {token}"} if auth else {})}
        headers.update(kwargs.pop("headers", {}))
        async with self.client.request(method, "/api/v1" + path, headers=headers, **kwargs) as r:
            assert r.content_type == "application/json"
            return r.status, await r.json()

    async def catch_up(self) -> None:
        await projections.ProjectionRunner(self.pool, self.dsn).run_until_caught_up()

    async def failed_job(self) -> str:
        job_id = await self.dispatcher.enqueue("cleanup-old-data", CLEANUP)
        await self.dispatcher.update_job_execution(job_id, {"status": "processing"})
        await self.dispatcher.update_job_execution(job_id, {"status": "failed", "error": "x"})
        return job_id


@contextlib.asynccontextmanager
async def api_client(
    pool: asyncpg.Pool,
    db_dsn: str,
    *,
    public_docs: bool = False,
    statement_timeout: float = 5.0,
    **context: Any,
) -> AsyncIterator[Api]:
    """The API mounted on a host app, served over real HTTP."""
    host = web.Application()
    api = projections.api_app(TOKENS, public_docs=public_docs, statement_timeout=statement_timeout)
    host.add_subapp("/api/v1", api)
    host[projections.API_CONTEXT] = projections.ApiContext(
        pool, jobstore.Dispatcher(jobstore.EventStore(pool)), **context
    )
    async with TestClient(TestServer(host)) as client:
        yield Api(client, pool, db_dsn)


@pytest.fixture
async def api(pool: asyncpg.Pool, db_dsn: str) -> AsyncIterator[Api]:
    async with api_client(pool, db_dsn) as client:
        yield client


ROUTES = [
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("POST", "/jobs/replay"),
    ("GET", f"/jobs/{new_job_id()}"),
    ("GET", f"/jobs/{new_job_id()}/events"),
    ("POST", f"/jobs/{new_job_id()}/replay"),
    ("POST", f"/jobs/{new_job_id()}/cancel"),
    ("GET", "/stats"),
    ("GET", "/schedules"),
    ("GET", "/no/such/route"),
]


async def test_every_route_needs_the_bearer_token(api: Api) -> None:
    for method, path in ROUTES:
        for header in (None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"):
            headers = {} if header is None else {"Authorization": header}
            status, body = await api.call(method, path, auth=False, headers=headers)
            assert (status, body["code"]) == (401, "UNAUTHORIZED"), (method, path, header)


async def test_the_openapi_document_needs_a_token_unless_public(
    api: Api, pool: asyncpg.Pool, db_dsn: str
) -> None:
    status, body = await api.call("GET", "/openapi.json", auth=False)
    assert (status, body["code"]) == (401, "UNAUTHORIZED")
    status, body = await api.call("GET", "/openapi.json", token=READER)
    assert status == 200 and body["openapi"].startswith("3.")
    async with api_client(pool, db_dsn, public_docs=True) as public:
        status, body = await public.call("GET", "/openapi.json", auth=False)
    assert status == 200 and body["openapi"].startswith("3.")
    assert set(body["paths"]) == {
        "/jobs",
        "/jobs/replay",
        "/jobs/{id}",
        "/jobs/{id}/events",
        "/jobs/{id}/replay",
        "/jobs/{id}/cancel",
        "/stats",
        "/schedules",
        "/erasures",
        "/audit/verify",
        "/audit/anchors",
    }


async def test_enqueue_then_read_the_job_its_events_and_the_stats(api: Api) -> None:
    status, created = await api.call(
        "POST", "/jobs", json={"type": "cleanup-old-data", "payload": CLEANUP}
    )
    assert status == 201 and created["created"] is True
    job_id = created["job_id"]

    status, job = await api.call("GET", f"/jobs/{job_id}")  # views not caught up: the fold
    assert (status, job["status"], job["attempts"]) == (200, "pending", [])

    await api.catch_up()
    status, page = await api.call("GET", "/jobs", params={"type": "cleanup-old-data"})
    assert status == 200 and [i["job_id"] for i in page["items"]] == [job_id]
    assert page["next_cursor"] is None
    status, history = await api.call("GET", f"/jobs/{job_id}/events")
    assert [e["type"] for e in history["events"]] == ["job.dispatched"]
    status, stats = await api.call("GET", "/stats")
    assert (status, stats["total"], stats["by_status"]) == (200, 1, {"pending": 1})


async def test_an_idempotent_enqueue_answers_200_with_the_same_job(api: Api) -> None:
    body = {
        "type": "cleanup-old-data",
        "payload": CLEANUP,
        "metadata": {"idempotency_key": "nightly-2026-01-01"},
    }
    first_status, first = await api.call("POST", "/jobs", json=body)
    second_status, second = await api.call("POST", "/jobs", json=body)
    assert (first_status, second_status) == (201, 200)
    assert (second["job_id"], second["created"]) == (first["job_id"], False)


BAD_ENQUEUES: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "cleanup-old-data", "payload": {"retention": -1}}, "VALIDATION_ERROR", "payload"),
    ({"type": "no-such-type", "payload": {}}, "UNKNOWN_JOB_TYPE", "known types"),
    ({"type": "cleanup-old-data"}, "INVALID_PARAMETER", "needs 'type' and 'payload'"),
    ({"type": "cleanup-old-data", "payload": [1]}, "INVALID_PARAMETER", "JSON object"),
    ({"type": "cleanup-old-data", "payload": CLEANUP, "x": 1}, "INVALID_PARAMETER", "x:"),
    (
        {"type": "cleanup-old-data", "payload": CLEANUP, "metadata": {"trace": "a\u0000b"}},
        "VALIDATION_ERROR",
        "NUL",
    ),
]


async def test_a_bad_enqueue_is_a_400_saying_why(api: Api) -> None:
    for body, code, says in BAD_ENQUEUES:
        status, answer = await api.call("POST", "/jobs", json=body)
        assert (status, answer["code"]) == (400, code), body
        assert says in answer["error"], body


BAD_FILTERS: list[tuple[Any, str]] = [
    ({"status": "done"}, "status"),
    ({"status": "failed\x00"}, "status"),
    ({"type": "'; DROP TABLE jobtrail.events; --"}, "type"),
    ({"user_id": "1e3"}, "user_id"),
    ({"user_id": "99999999999999999999"}, "user_id"),
    ({"created_from": "last tuesday"}, "created_from"),
    ({"error_contains": "x\x00y"}, "error_contains"),
    ({"error_contains": "x" * 201}, "error_contains"),
    ({"limit": "501"}, "limit"),
    ({"limit": "99999999999999999999999"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "\x00"}, "cursor"),
    ({"colour": "red"}, "colour"),
    ([("status", "failed"), ("status", "pending")], "status"),
    ({"source": "'; DROP TABLE jobtrail.events; --"}, "source"),
    ({"source": "cron"}, "source"),
    ({"schedule_id": "s\x00"}, "schedule_id"),
    ({"schedule_id": "s" * 201}, "schedule_id"),
    ([("source", "api"), ("source", "replay")], "source"),
]


async def test_an_invalid_filter_is_a_400_naming_the_parameter(api: Api) -> None:
    for params, parameter in BAD_FILTERS:
        status, answer = await api.call("GET", "/jobs", params=params)
        assert (status, answer["parameter"]) == (400, parameter), params
        assert answer["error"].startswith(parameter), params


async def test_hostile_but_valid_filter_text_is_just_text(api: Api) -> None:
    for text in ("'; DROP TABLE jobtrail.events; --", "%", "_", "\\", "💥", "a" * 200):
        for parameter in ("error_contains", "schedule_id"):
            status, page = await api.call("GET", "/jobs", params={parameter: text})
            assert (status, page["items"]) == (200, [])


async def test_seed_metadata_schedule_and_source_filter_the_list(api: Api) -> None:
    status, created = await api.call(
        "POST",
        "/jobs",
        json={"type": "cleanup-old-data", "payload": CLEANUP, "metadata": {"userId": 7}},
    )
    assert status == 201
    store = jobstore.EventStore(api.pool)
    run = new_job_id()
    meta = {"schedule_id": "sched_nightly"}
    await append(store, run, dispatched(run, metadata=meta, source="schedule"))
    await api.catch_up()

    async def listed(**params: str) -> list[str]:
        status, page = await api.call("GET", "/jobs", params=params)
        assert status == 200, page
        return [item["job_id"] for item in page["items"]]

    assert await listed(user_id="7") == [created["job_id"]]
    assert await listed(schedule_id="sched_nightly") == [run]
    assert await listed(source="schedule") == [run]
    assert await listed(source="api") == [created["job_id"]]
    assert await listed(source="replay") == []


async def test_pages_follow_the_cursor_and_a_foreign_cursor_is_refused(api: Api) -> None:
    store = jobstore.EventStore(api.pool)
    for _ in range(3):
        job = new_job_id()
        await append(store, job, dispatched(job))
    await api.catch_up()
    _, first = await api.call("GET", "/jobs", params={"limit": "2"})
    _, second = await api.call(
        "GET", "/jobs", params={"limit": "2", "cursor": first["next_cursor"]}
    )
    assert len(first["items"]) == 2 and len(second["items"]) == 1
    status, answer = await api.call(
        "GET", "/jobs", params={"status": "failed", "cursor": first["next_cursor"]}
    )
    assert (status, answer["code"], answer["parameter"]) == (400, "INVALID_CURSOR", "cursor")


async def test_unknown_jobs_are_404_and_bad_ids_400(api: Api) -> None:
    for path in ("/jobs/{}", "/jobs/{}/events"):
        status, answer = await api.call("GET", path.format(new_job_id()))
        assert (status, answer["code"]) == (404, "JOB_NOT_FOUND")
        for bad in ("not-a-uuid", "%00", "1%20OR%201=1"):
            status, answer = await api.call("GET", path.format(bad))
            assert (status, answer["parameter"]) == (400, "id")


async def test_replay_answers_200_then_409_and_404_for_unknown(api: Api) -> None:
    job_id = await api.failed_job()
    status, answer = await api.call("POST", f"/jobs/{job_id}/replay", json={"reason": "fixed"})
    assert status == 200 and answer["job_id"] == job_id
    status, answer = await api.call("POST", f"/jobs/{job_id}/replay")
    assert (status, answer["code"]) == (409, "NOT_REPLAYABLE")
    status, answer = await api.call("POST", f"/jobs/{new_job_id()}/replay")
    assert (status, answer["code"]) == (404, "JOB_NOT_FOUND")
    status, answer = await api.call("POST", f"/jobs/{job_id}/replay", json={"reason": 5})
    assert (status, answer["parameter"]) == (400, "reason")

    await api.catch_up()
    _, job = await api.call("GET", f"/jobs/{job_id}")
    assert (job["status"], job["replay_count"]) == ("pending", 1)


async def test_bulk_replay_by_filter(api: Api) -> None:
    failed_jobs = {await api.failed_job() for _ in range(3)}
    await api.catch_up()
    status, answer = await api.call("POST", "/jobs/replay", json={"reason": "everything"})
    assert (status, answer["parameter"]) == (400, "filter"), "no filter, no bulk replay"
    select = {"type": "cleanup-old-data", "reason": "bulk"}
    status, answer = await api.call("POST", "/jobs/replay", json=select)
    assert (status, answer["code"], answer["count"]) == (409, "CONFIRM_COUNT", 3)
    status, answer = await api.call("POST", "/jobs/replay", json={**select, "expected_count": 2})
    assert (status, answer["code"], answer["count"]) == (409, "COUNT_CHANGED", 3)
    await api.catch_up()
    _, page = await api.call("GET", "/jobs", params={"status": "failed"})
    assert len(page["items"]) == 3, "nothing replayed before the count was confirmed"
    status, outcome = await api.call("POST", "/jobs/replay", json={**select, "expected_count": 3})
    assert status == 200
    assert (outcome["selected"], outcome["replayed"]) == (3, 3)
    assert set(outcome["replayed_job_ids"]) == failed_jobs
    status, answer = await api.call("POST", "/jobs/replay", json={"status": "completed"})
    assert (status, answer["parameter"]) == (400, "status")
    status, answer = await api.call("POST", "/jobs/replay", data=b"{not json")
    assert (status, answer["parameter"]) == (400, "body")


async def test_cancel_answers_200_then_409(api: Api) -> None:
    job_id = await api.dispatcher.enqueue("cleanup-old-data", CLEANUP)
    status, answer = await api.call("POST", f"/jobs/{job_id}/cancel", json={"reason": "no"})
    assert status == 200 and answer["position"] > 0
    status, answer = await api.call("POST", f"/jobs/{job_id}/cancel")
    assert (status, answer["code"]) == (409, "JOB_FINISHED")


async def test_a_job_shows_its_attempts(api: Api) -> None:
    store = jobstore.EventStore(api.pool)
    job = new_job_id()
    await append(store, job, dispatched(job), started(), failed())
    await api.catch_up()
    status, answer = await api.call("GET", f"/jobs/{job}")
    assert status == 200 and answer["status"] == "failed"
    assert [(a["attempt"], a["outcome"]) for a in answer["attempts"]] == [(1, "failed")]


async def test_schedules_are_listed(api: Api) -> None:
    schedule_id = await api.dispatcher.schedule("cleanup-old-data", "0 3 * * *", CLEANUP)
    status, answer = await api.call("GET", "/schedules")
    assert status == 200
    assert [(s["schedule_id"], s["cron"]) for s in answer["items"]] == [(schedule_id, "0 3 * * *")]


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    status, answer = await api.call("GET", "/nothing")
    assert (status, answer["code"]) == (404, "NOT_FOUND")
    status, answer = await api.call("DELETE", "/jobs")
    assert (status, answer["code"]) == (405, "METHOD_NOT_ALLOWED")


OPERATE_ROUTES = [
    ("POST", "/jobs"),
    ("POST", "/jobs/replay"),
    ("POST", f"/jobs/{new_job_id()}/replay"),
    ("POST", f"/jobs/{new_job_id()}/cancel"),
]


async def test_a_read_token_cannot_operate_and_hears_which_scope_it_needs(api: Api) -> None:
    for method, path in OPERATE_ROUTES:
        status, body = await api.call(method, path, token=READER, json={})
        assert (status, body["code"], body["scope"]) == (403, "FORBIDDEN", "operate"), path
        assert "'operate'" in body["error"] and "dash" in body["error"]
    for method, path in [r for r in ROUTES if r[0] == "GET" and "no/such" not in r[1]]:
        status, _ = await api.call(method, path, token=READER)
        assert status in (200, 404), path


async def test_events_an_operator_causes_name_the_token(api: Api) -> None:
    status, created = await api.call(
        "POST", "/jobs", token=OPERATOR, json={"type": "cleanup-old-data", "payload": CLEANUP}
    )
    assert status == 201
    await api.call("POST", f"/jobs/{created['job_id']}/cancel", token=OPERATOR)
    single, bulk = await api.failed_job(), await api.failed_job()
    await api.call("POST", f"/jobs/{single}/replay", token=OPERATOR)
    await api.catch_up()
    status, _ = await api.call(
        "POST",
        "/jobs/replay",
        token=OPERATOR,
        json={"type": "cleanup-old-data", "expected_count": 2},
    )
    assert status == 200
    for job_id, types in (
        (created["job_id"], {"job.dispatched", "job.cancelled"}),
        (single, {"job.dispatched"}),
        (bulk, {"job.dispatched"}),
    ):
        _, history = await api.call("GET", f"/jobs/{job_id}/events", token=READER)
        by_operator = [e for e in history["events"] if e["metadata"].get("actor")]
        assert {e["type"] for e in by_operator} == types, job_id
        assert {e["metadata"]["actor"] for e in by_operator} == {"api:ops-bot"}


SECRETS = ("hunter2", "abc123SECRET", "4111 1111 1111 1111", "xyzBEARERxyz")
SECRET_PAYLOAD = {
    "reset_url": "https://app.example/reset?token=abc123SECRET",
    "nested": [{"deeper": {"password": "hunter2", "note": "card 4111 1111 1111 1111"}}],
}


async def test_secrets_are_redacted_unless_an_admin_asks_for_raw(api: Api) -> None:
    job_id = new_job_id()
    await append(
        jobstore.EventStore(api.pool),
        job_id,
        dispatched(
            job_id,
            payload=SECRET_PAYLOAD,
            metadata={"trace": "https://app.example/cb?apiKey=abc123SECRET"},
            options={"retries": 1, "headers": {"Authorization": "Bearer xyzBEARERxyz"}},
        ),
    )
    failing = await api.dispatcher.enqueue("cleanup-old-data", CLEANUP)
    await api.dispatcher.update_job_execution(failing, {"status": "processing"})
    await api.dispatcher.update_job_execution(
        failing, {"status": "failed", "error": "login refused: password=hunter2"}
    )
    await api.catch_up()
    reads = [
        "/jobs",
        f"/jobs/{job_id}",
        f"/jobs/{job_id}/events",
        f"/jobs/{failing}",
        f"/jobs/{failing}/events",
    ]
    for path in reads:
        async with api.client.get("/api/v1" + path, headers=AUTH) as response:
            text = await response.text()
        assert response.status == 200, path
        assert not [s for s in SECRETS if s in text], path
        assert "[redacted]" in text, path

    _, raw = await api.call("GET", f"/jobs/{job_id}/events", params={"raw": "true"})
    first = raw["events"][0]["data"]
    assert first["options"]["headers"]["Authorization"] == "Bearer xyzBEARERxyz"
    assert first["payload"]["nested"][0]["deeper"]["password"] == "hunter2"
    _, raw = await api.call("GET", f"/jobs/{failing}", params={"raw": "true"})
    assert raw["error"].endswith("login refused: password=hunter2")
    for path in reads:
        status, body = await api.call("GET", path, token=OPERATOR, params={"raw": "true"})
        assert (status, body["scope"]) == (403, "admin"), path
    status, body = await api.call("GET", "/jobs", params={"raw": "yes"})
    assert (status, body["parameter"]) == (400, "raw")


async def test_a_query_past_the_statement_timeout_is_a_503(pool: asyncpg.Pool, db_dsn: str) -> None:
    """A view locked by someone else: the API gives up at its timeout, never hangs or 500s."""
    async with api_client(pool, db_dsn, statement_timeout=0.3) as api:
        locker = await asyncpg.connect(db_dsn)
        try:
            async with locker.transaction():
                await locker.execute(
                    "LOCK TABLE jobtrail.job_executions, jobtrail.job_stats "
                    "IN ACCESS EXCLUSIVE MODE"
                )
                answers = await asyncio.wait_for(
                    asyncio.gather(
                        api.call("GET", "/jobs"),
                        api.call("GET", "/stats"),
                        api.call("POST", "/jobs/replay", json={"type": "x"}),
                    ),
                    timeout=3,
                )
        finally:
            await locker.close()
    for status, body in answers:
        assert (status, body["code"]) == (503, "QUERY_TIMEOUT")
