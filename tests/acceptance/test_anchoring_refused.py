"""A host whose audit key does not fit the anchors in the database says so and keeps serving.

The anchors were signed by one key; a host comes up with another (a wrong secret, a key
rotated without JOBTRAIL_AUDIT_PREVIOUS_KEYS).  It must not extend the chain of anchors,
and an operator must not learn it only from a log line: ``/readyz`` stays 200 (jobs still
run) and lists the anchoring task under ``degraded`` with the error that says what to set,
``/metrics`` shows the task down (the shipped JobtrailBackgroundTaskDown alert fires) and
the anchors' lag (JobtrailAuditAnchorsStale), no anchor is added, and the hash chain
itself goes on (it needs no key).
"""

from __future__ import annotations

import asyncpg
import orjson
from prometheus_client.parser import text_string_to_metric_families

import jobstore
from jobstore import audit
from tests.acceptance.test_fault_supervision import get, metric, until
from tests.events import Noted
from tests.host_support import running_host

SIGNED_WITH = audit.AuditKey(b"the-key-the-anchors-were-signed-with")
HOST_KEY = "a-different-key-set-on-this-host-0123"


async def test_a_host_with_the_wrong_audit_key_reports_anchoring_stopped_and_serves(
    db_dsn: str, pool: asyncpg.Pool
) -> None:
    store = jobstore.EventStore(pool)
    await store.append("job-before", [Noted(n=1)], jobstore.NO_STREAM)
    (anchor,) = await audit.Anchorer(pool, db_dsn, SIGNED_WITH).anchor_through()
    wrong = audit.AuditKey(HOST_KEY.encode())

    async with running_host(db_dsn, audit_key=HOST_KEY, audit_anchor_interval_seconds=0.2) as host:

        async def degraded() -> bool:
            status, body = await get(host, "/readyz")
            return status == 200 and "degraded" in orjson.loads(body)

        await until(degraded, "/readyz lists the anchoring task as degraded")
        status, body = await get(host, "/readyz")
        ready = orjson.loads(body)
        assert status == 200 and ready["status"] == "ready", body
        (task,) = ready["degraded"]
        assert task["task"] == "audit-anchors" and task["required"] is False, task
        assert f"signed by key id {SIGNED_WITH.key_id}" in task["last_error"], task
        assert f"JOBTRAIL_AUDIT_KEY (key id {wrong.key_id})" in task["last_error"], task
        assert "JOBTRAIL_AUDIT_PREVIOUS_KEYS" in task["last_error"], task
        _, text = await get(host, "/metrics")
        assert metric(text, "jobtrail_background_task_up", "audit-anchors") == 0
        families = {f.name: f for f in text_string_to_metric_families(text)}
        (last,) = families["jobtrail_audit_last_anchor_timestamp_seconds"].samples
        made = await pool.fetchval("SELECT recorded_at FROM jobtrail.audit_anchors")
        assert last.value == made.timestamp(), "the one anchor, made before the host came up"

        job_id = await host.enqueue(tag="served while anchoring is refused")
        await host.wait_status(job_id, "completed", within=60)

        async def chained() -> bool:
            unchained = await pool.fetchval(
                "SELECT count(*) FROM jobtrail.events e WHERE e.stream_id = $1 AND NOT EXISTS"
                " (SELECT 1 FROM jobtrail.event_hashes h WHERE h.position = e.position)",
                f"job-{job_id}",
            )
            return int(unchained) == 0

        await until(chained, "the job's events are chained although anchoring is refused")
        _, text = await get(host, "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        (unanchored,) = families["jobtrail_audit_unanchored_events"].samples
        assert unanchored.value >= 3, "the job's events: chained, not anchored"

    assert [a.seq for a in await audit.anchors(pool)] == [anchor.seq], "no anchor was added"
