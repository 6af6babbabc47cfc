"""schemathesis against the API's own OpenAPI document: no generated request gets a 5xx,
and every answer to a valid request matches the document (status, content type, schema)."""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings

import jobstore
import projections
from jobstore import audit
from projections import openapi
from tests.projection_support import append, completed, dispatched, failed, new_job_id, started

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")
from schemathesis import checks  # noqa: E402

TOKEN = "schema-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 30
SERVER_ONLY = [checks.not_a_server_error]
CONFORMANCE = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def run_schemathesis(base_url: str, seen: Counter[tuple[str, str, int]]) -> list[str]:
    """Every operation, valid and invalid inputs; the problems found, as text."""
    schema = schemathesis.openapi.from_dict(openapi.document())
    problems: list[str] = []
    session = requests.Session()
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode, used in (
                (schemathesis.GenerationMode.POSITIVE, CONFORMANCE),
                (schemathesis.GenerationMode.NEGATIVE, SERVER_ONLY),
            ):
                try:
                    _explore(operation, mode, used, base_url, session, seen)
                except Exception as exc:
                    problems.append(f"{operation.label} ({mode.value}): {exc}")
    finally:
        session.close()
    return problems


def _explore(
    operation: Any,
    mode: Any,
    used: list[Any],
    base_url: str,
    session: Any,
    seen: Counter[tuple[str, str, int]],
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def explore(case: Any) -> None:
        response = case.call_and_validate(
            base_url=base_url, session=session, headers=AUTH, checks=used
        )
        seen[(operation.label, mode.value, response.status_code)] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explore()


async def seed(pool: asyncpg.Pool, db_dsn: str) -> None:
    """Jobs in every state, a schedule, and the views caught up."""
    store = jobstore.EventStore(pool)
    for events in ([started(), completed()], [started(), failed()], [], [started()]):
        job = new_job_id()
        await append(store, job, dispatched(job), *events)
    dispatcher = jobstore.Dispatcher(store)
    await dispatcher.schedule("cleanup-old-data", "0 3 * * *", {"retention": 30})
    await projections.ProjectionRunner(pool, db_dsn).run_until_caught_up()


@pytest.mark.slow
async def test_no_generated_request_gets_a_server_error(pool: asyncpg.Pool, db_dsn: str) -> None:
    await seed(pool, db_dsn)
    host = web.Application()
    host.add_subapp("/api/v1", projections.api_app([projections.token.token("t", TOKEN)]))
    host[projections.API_CONTEXT] = projections.ApiContext(
        pool, jobstore.Dispatcher(jobstore.EventStore(pool))
    )
    host[projections.AUDIT_KEY] = audit.AuditKey(b"schema-audit-key-0123456789")
    server = TestServer(host, host="127.0.0.1")
    await server.start_server()
    try:
        base_url = str(server.make_url("/api/v1"))
        seen: Counter[tuple[str, str, int]] = Counter()
        problems = await asyncio.to_thread(run_schemathesis, base_url, seen)
    finally:
        await server.close()
    assert problems == []
    print(*sorted(seen.items()), sep="\n")
    operations = {label for label, _, _ in seen}
    assert len(operations) == len([m for p in openapi.document()["paths"].values() for m in p])
    assert {mode for _, mode, _ in seen} == {"positive", "negative"}
