"""Failures through the official SDK: retries, the DLQ, non-retryable errors, callbacks, cancel."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import httpx
from aiohttp import web
from qstash.log import LogState

import qstash_local
from tests.qstash_support import (
    Delivery,
    Harness,
    ThreadedHarness,
    eventually,
    harness,
    running,
    threaded,
    wait_sync,
)

__all__ = ["harness", "threaded"]

REAL_TIMING = qstash_local.Config(retry_delay_scale=1.0, scheduler_tick_s=0.01)


def _fail(status: int = 500, body: str = "boom", **headers: str) -> web.Response:
    return web.Response(status=status, text=body, headers=headers)


async def test_failing_destination_is_retried_then_dead_lettered(harness: Harness) -> None:
    h = harness
    h.sink.respond("/fail", lambda d: _fail())
    res = await h.client.message.publish(url=h.sink.url("/fail"), body="x", retries=2)
    mid = res.message_id  # type: ignore[union-attr]
    states = await h.wait_state(mid, "FAILED")
    assert states == ["CREATED"] + ["ACTIVE", "ERROR", "RETRY"] * 2 + ["ACTIVE", "ERROR", "FAILED"]
    assert [d.retried for d in h.sink.at("/fail")] == [0, 1, 2]
    dlq = await h.client.dlq.list()
    [entry] = dlq.messages
    assert dlq.cursor is None
    assert (entry.message_id, entry.response_status, entry.response_body) == (mid, 500, "boom")
    assert (await h.client.dlq.get(entry.dlq_id)).max_retries == 2


async def test_non_retryable_489_fails_after_one_attempt(harness: Harness) -> None:
    h = harness
    h.sink.respond("/stop", lambda d: _fail(489, **{"Upstash-NonRetryable-Error": "true"}))
    res = await h.client.message.publish(url=h.sink.url("/stop"), body="x")
    await h.wait_state(res.message_id, "FAILED")  # type: ignore[union-attr]
    assert len(h.sink.at("/stop")) == 1
    assert (await h.client.dlq.list()).messages[0].response_status == 489


async def test_489_without_the_header_is_retried_like_any_failure(harness: Harness) -> None:
    h = harness
    h.sink.respond("/489", lambda d: _fail(489))
    res = await h.client.message.publish(url=h.sink.url("/489"), body="x", retries=1)
    await h.wait_state(res.message_id, "FAILED")  # type: ignore[union-attr]
    assert len(h.sink.at("/489")) == 2


async def test_refused_connection_is_a_failed_attempt_with_status_0(harness: Harness) -> None:
    h = harness
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    res = await h.client.message.publish(url=f"http://127.0.0.1:{closed_port}/x", retries=0)
    await h.wait_state(res.message_id, "FAILED")  # type: ignore[union-attr]
    [entry] = (await h.client.dlq.list()).messages
    assert entry.response_status == 0


async def test_destination_timeout_is_a_failed_attempt(harness: Harness) -> None:
    h = harness
    release = asyncio.Event()

    async def slow(d: Delivery) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    h.sink.respond("/slow", slow)
    res = await h.client.message.publish(url=h.sink.url("/slow"), retries=0, timeout="100ms")
    await h.wait_state(res.message_id, "FAILED")  # type: ignore[union-attr]
    release.set()
    logs = (await h.client.log.list(filter={"message_id": res.message_id})).logs  # type: ignore[union-attr]
    [error] = [log for log in logs if log.state.value == "ERROR"]
    assert error.error is not None
    assert "timed out" in error.error


async def test_retry_delay_expression_sets_the_next_delivery_time() -> None:
    async with running(REAL_TIMING) as h:
        h.sink.respond("/later", lambda d: _fail())
        res = await h.client.message.publish(
            url=h.sink.url("/later"), body="x", retry_delay="60000 * (1 + retried)"
        )
        mid = res.message_id  # type: ignore[union-attr]
        await h.wait_state(mid, "RETRY")
        logs = (await h.client.log.list(filter={"message_id": mid})).logs
        [retry] = [log for log in logs if log.state.value == "RETRY"]
        assert retry.retry_delay_expression == "60000 * (1 + retried)"
        assert retry.next_delivery_time is not None
        assert 59_000 <= retry.next_delivery_time - retry.time <= 61_000
        assert (await h.client.message.get(mid)).retry_delay_expression == "60000 * (1 + retried)"
        await h.client.message.cancel(mid)  # cancel while it waits for its retry
        assert (await h.events(mid))[-2:] == ["CANCEL_REQUESTED", "CANCELED"]
        assert len(h.sink.at("/later")) == 1


async def test_retry_after_header_of_the_response_schedules_the_retry() -> None:
    async with running(REAL_TIMING) as h:
        h.sink.respond("/busy", lambda d: _fail(503, **{"Retry-After": "3600"}))
        res = await h.client.message.publish(url=h.sink.url("/busy"), body="x")
        mid = res.message_id  # type: ignore[union-attr]
        await h.wait_state(mid, "RETRY")
        logs = (await h.client.log.list(filter={"message_id": mid})).logs
        [retry] = [log for log in logs if log.state.value == "RETRY"]
        assert retry.next_delivery_time is not None
        assert 3_599_000 <= retry.next_delivery_time - retry.time <= 3_601_000
        assert await h.client.message.cancel_all() == 1
        assert await h.client.message.cancel_all() == 0


async def test_default_backoff_waits_about_12_seconds_before_the_first_retry() -> None:
    async with running(REAL_TIMING) as h:
        h.sink.respond("/backoff", lambda d: _fail())
        res = await h.client.message.publish(url=h.sink.url("/backoff"), body="x")
        mid = res.message_id  # type: ignore[union-attr]
        await h.wait_state(mid, "RETRY")
        logs = (await h.client.log.list(filter={"message_id": mid, "state": LogState.RETRY})).logs
        assert logs[0].next_delivery_time is not None
        assert 11_500 <= logs[0].next_delivery_time - logs[0].time <= 13_000
        assert await h.client.message.cancel_many([mid, "msg_unknown"]) == 1


async def test_callbacks_follow_every_attempt_and_failure_callback_the_last(
    harness: Harness,
) -> None:
    h = harness
    h.sink.respond("/cbfail", lambda d: _fail(502, "bad gateway"))
    res = await h.client.message.publish(
        url=h.sink.url("/cbfail"),
        body="payload",
        retries=1,
        callback=h.sink.url("/cb"),
        failure_callback=h.sink.url("/fcb"),
        failure_callback_headers={"Forward-X-Tenant": "t1"},
    )
    mid = res.message_id  # type: ignore[union-attr]
    [failure] = await eventually(lambda: h.sink.at("/fcb"), what="failure callback")
    callbacks = await eventually(lambda: len(h.sink.at("/cb")) == 2 and h.sink.at("/cb"))
    bodies = [json.loads(d.body) for d in callbacks]
    assert sorted(b["retried"] for b in bodies) == [0, 1]
    assert {b["status"] for b in bodies} == {502}
    assert base64.b64decode(bodies[0]["body"]) == b"bad gateway"
    assert bodies[0]["sourceMessageId"] == mid
    assert base64.b64decode(bodies[0]["sourceBody"]) == b"payload"
    fbody = json.loads(failure.body)
    assert fbody["sourceMessageId"] == mid
    assert fbody["maxRetries"] == 1
    assert fbody["dlqId"] == (await h.client.dlq.list()).messages[0].dlq_id
    assert failure.headers["X-Tenant"] == "t1"


async def test_callback_of_a_successful_delivery_carries_the_response(harness: Harness) -> None:
    h = harness
    h.sink.respond("/okcb", lambda d: web.Response(status=201, text="made"))
    await h.client.message.publish(url=h.sink.url("/okcb"), callback=h.sink.url("/cb2"))
    [callback] = await eventually(lambda: h.sink.at("/cb2"))
    body = json.loads(callback.body)
    assert (body["status"], base64.b64decode(body["body"])) == (201, b"made")
    assert callback.headers["Content-Type"] == "application/json"


async def test_dlq_entries_can_be_deleted_and_retried(harness: Harness) -> None:
    h = harness
    outcome = {"status": 500}
    h.sink.respond("/flaky", lambda d: web.Response(status=outcome["status"]))
    ids = []
    for _ in range(3):
        res = await h.client.message.publish(url=h.sink.url("/flaky"), retries=0)
        ids.append(res.message_id)  # type: ignore[union-attr]
        await h.wait_state(ids[-1], "FAILED")
    entries = (await h.client.dlq.list()).messages
    await h.client.dlq.delete(entries[0].dlq_id)
    assert await h.client.dlq.delete_many([entries[1].dlq_id, "0-0"]) == 1
    outcome["status"] = 200
    async with httpx.AsyncClient(base_url=h.server.url) as http:
        answer = await http.post(
            f"/v2/dlq/retry/{entries[2].dlq_id}",
            headers={"Authorization": f"Bearer {qstash_local.DEV_TOKEN}"},
        )
    assert answer.status_code == 201
    await h.wait_state(answer.json()["messageId"], "DELIVERED")
    assert (await h.client.dlq.list()).messages == []


async def test_dlq_list_pages_with_a_cursor_and_filters(harness: Harness) -> None:
    h = harness
    h.sink.respond("/p", lambda d: _fail(500))
    for i in range(3):
        res = await h.client.message.publish(url=h.sink.url("/p"), retries=0, label=f"l{i % 2}")
        await h.wait_state(res.message_id, "FAILED")  # type: ignore[union-attr]
    first = await h.client.dlq.list(count=2)
    assert len(first.messages) == 2
    assert first.cursor is not None
    rest = await h.client.dlq.list(count=2, cursor=first.cursor)
    assert len(rest.messages) == 1
    assert rest.cursor is None
    labelled = await h.client.dlq.list(filter={"label": "l0"})
    assert [m.label for m in labelled.messages] == ["l0", "l0"]


async def test_sync_client_sees_retries_end_in_the_dlq(threaded: ThreadedHarness) -> None:
    t = threaded
    t.sink.respond("/sync-fail", lambda d: _fail(500, "nope"))
    res = t.client.message.publish(url=t.sink.url("/sync-fail"), body="x", retries=1)
    entries = wait_sync(lambda: t.client.dlq.list().messages, what="a DLQ entry")
    assert entries[0].message_id == res.message_id  # type: ignore[union-attr]
    assert entries[0].response_body == "nope"
    assert [d.retried for d in t.sink.at("/sync-fail")] == [0, 1]
    t.client.dlq.delete(entries[0].dlq_id)
    assert t.client.dlq.list().messages == []


async def test_retry_after_is_honoured_as_asked_even_when_delays_are_scaled() -> None:
    """The scale speeds up QStash's own backoff; a destination's Retry-After is its own ask."""
    async with running() as h:  # retry delays scaled by 0.0001
        h.sink.respond("/lease", lambda d: _fail(503, **{"Retry-After": "2"}))
        res = await h.client.message.publish(url=h.sink.url("/lease"), body="x")
        mid = res.message_id  # type: ignore[union-attr]
        await h.wait_state(mid, "RETRY")
        logs = (await h.client.log.list(filter={"message_id": mid})).logs
        [retry] = [log for log in logs if log.state.value == "RETRY"]
        assert retry.next_delivery_time is not None
        assert 1_900 <= retry.next_delivery_time - retry.time <= 2_100
        assert len(h.sink.at("/lease")) == 1
        await h.client.message.cancel(mid)
