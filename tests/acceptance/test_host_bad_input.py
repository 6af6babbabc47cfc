"""The worker endpoints' bad-input matrix: the status, and exactly the events promised."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest

import jobstore
from jobstore import job_events
from tests.host_support import TEST_PATH, Host, dispatched, running_host


@pytest.fixture
async def host(db_dsn: str) -> AsyncIterator[Host]:
    async with running_host(db_dsn, relay=False) as running:
        yield running


async def _pending_job(host: Host, **payload: object) -> str:
    return await host.dispatcher.enqueue("test-job", payload)


def _body(job_id: str) -> bytes:
    return orjson.dumps(
        {"job_id": job_id, "dispatch": 1, "type": "test-job", "payload": {}, "metadata": {}}
    )


async def _log_size(host: Host) -> int:
    return await host.ctx.store.last_position()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("case", "sign"),
    [
        ("missing", None),
        ("forged key", {"key": "sig_ForgedForgedForgedForgedForg"}),
        ("expired", {"now": int(time.time()) - 3600}),
        ("wrong url", {"url": "http://evil.example/jobs/test"}),
    ],
)
async def test_bad_signature_is_401_and_appends_nothing(
    host: Host, case: str, sign: dict[str, object] | None
) -> None:
    job_id = await _pending_job(host)
    before = await _log_size(host)
    status, answer, _ = await host.post(
        TEST_PATH, _body(job_id), signed=sign is not None, **(sign or {})
    )
    assert status == 401, case
    assert answer == {"error": "signature verification failed"}  # no hint of what to sign
    assert await _log_size(host) == before
    assert host.handler.calls == []


async def test_tampered_body_is_401(host: Host) -> None:
    job_id = await _pending_job(host)
    signature = host.sign(TEST_PATH, _body(job_id))
    other = _body(str(uuid.uuid4()))
    status, _, _ = await host.post(
        TEST_PATH, other, signed=False, headers={"Upstash-Signature": signature}
    )
    assert status == 401
    assert host.handler.calls == []


async def test_signature_with_the_next_key_is_accepted(host: Host) -> None:
    job_id = await _pending_job(host)
    status, _, _ = await host.post(
        TEST_PATH, _body(job_id), key=host.settings.qstash_next_signing_key.get_secret_value()
    )
    assert status == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (orjson.dumps({"dispatch": 1}), "job_id"),
        (orjson.dumps({"job_id": "x'; DROP TABLE jobtrail.events; --", "dispatch": 1}), "job_id"),
        (orjson.dumps({"job_id": str(uuid.UUID(int=7)), "dispatch": 0}), "dispatch"),
        (orjson.dumps({"job_id": str(uuid.UUID(int=7)), "dispatch": 1}), "no job"),
        (b'{"job_id": "\\u0000", "dispatch": 1}', "job_id"),
    ],
)
async def test_signed_requests_not_tied_to_a_job_are_489_and_append_nothing(
    host: Host, body: bytes, expected: str
) -> None:
    before = await _log_size(host)
    status, answer, headers = await host.post(TEST_PATH, body)
    assert status == 489
    assert headers["Upstash-NonRetryable-Error"] == "true"
    assert expected in answer["error"]
    assert await _log_size(host) == before


async def test_oversized_body_is_413_and_appends_nothing(host: Host) -> None:
    before = await _log_size(host)
    status, answer, _ = await host.post(TEST_PATH, b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert status == 413
    assert "larger than" in answer["error"]
    assert await _log_size(host) == before


async def test_unknown_job_type_fails_the_job_with_489(host: Host) -> None:
    job_id = str(uuid.uuid4())
    await host.ctx.store.append(
        f"job-{job_id}", [dispatched(job_id, "send-fax", timeout=1.0)], "no_stream"
    )
    status, answer, headers = await host.post(TEST_PATH, _body(job_id))
    assert status == 489
    assert headers["Upstash-NonRetryable-Error"] == "true"
    assert "unknown job type 'send-fax'" in answer["error"]
    events = await host.events(job_id)
    assert [e.type_name for e in events] == ["job.dispatched", "job.failed"]
    assert events[1].error_type == "UnknownJobType"  # type: ignore[attr-defined]


async def test_invalid_stored_payload_fails_the_job_with_489(host: Host) -> None:
    job_id = str(uuid.uuid4())
    await host.ctx.store.append(
        f"job-{job_id}",
        [
            job_events.JobDispatched(
                job_id=job_id,
                dispatch=1,
                job_type="test-job",
                payload={"fail_times": "lots"},
                source="api",
                options={"timeout": 1.0},
            )
        ],
        "no_stream",
    )
    status, _, _ = await host.post(TEST_PATH, _body(job_id))
    assert status == 489
    assert await host.types(job_id) == ["job.dispatched", "job.failed"]
    assert host.handler.calls == []


async def test_health_readiness_and_metrics(host: Host) -> None:
    import aiohttp

    job_id = await _pending_job(host)
    await host.post(TEST_PATH, _body(job_id))
    async with aiohttp.ClientSession() as session:
        async with session.get(host.url + "/healthz") as r:
            assert r.status == 200
        async with session.get(host.url + "/readyz") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "ready"
        async with session.get(host.url + "/metrics") as r:
            text = await r.text()
    assert 'jobtrail_deliveries_total{job_type="test-job",outcome="completed"} 1.0' in text
    assert "jobtrail_handler_duration_seconds_bucket" in text
    assert "jobtrail_relay_backlog_events" in text
    assert "jobtrail_log_reader_held_back_events" in text


async def test_unknown_route_is_a_json_404(host: Host) -> None:
    status, answer, _ = await host.post("/nowhere", {})
    assert status == 404
    assert "error" in answer


async def test_readiness_reports_pending_migrations(server_dsn: str) -> None:
    from tests import pg

    name = pg.unique_name("jobtrail_unmigrated")
    import asyncpg

    conn = await asyncpg.connect(server_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        dsn = pg.with_database(server_dsn, name)
        await jobstore.migrate(dsn)
        async with running_host(dsn, relay=False) as host:
            await host.ctx.store.pool.execute(
                "DELETE FROM jobtrail.schema_migrations WHERE version = 1"
            )
            import aiohttp

            async with aiohttp.ClientSession() as session, session.get(host.url + "/readyz") as r:
                assert r.status == 503
                assert "0001_create_event_log" in (await r.json())["pending"]
    finally:
        await pg.drop(server_dsn, name)
