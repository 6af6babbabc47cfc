"""Auth, keys, bad input, queues and flow control of qstash_local, through the official SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiohttp import web
from qstash import AsyncQStash
from qstash.errors import QStashError, SignatureError
from qstash.log import LogState
from qstash.receiver import verify_with_key

import qstash_local
from tests.qstash_support import Delivery, Harness, eventually, harness

__all__ = ["harness"]
AUTH = {"Authorization": f"Bearer {qstash_local.DEV_TOKEN}"}


def _snapshot(h: Harness) -> tuple[int, ...]:
    s = h.state
    return (
        len(s.messages),
        len(list(s.events.oldest_first())),
        len(s.schedules),
        len(s.queues),
        len(s.dlq),
        len(s.groups),
        len(s.flows),
    )


async def test_api_calls_without_the_token_get_401(harness: Harness) -> None:
    h = harness
    wrong = AsyncQStash("not-the-token", base_url=h.server.url, retry=False)
    try:
        with pytest.raises(QStashError, match="401"):
            await wrong.message.publish(url=h.sink.url("/x"), body="x")
    finally:
        await wrong.http._client.aclose()
    async with httpx.AsyncClient(base_url=h.server.url) as http:
        bare = await http.get("/v2/keys")
        by_query = await http.get("/v2/keys", params={"qstash_token": qstash_local.DEV_TOKEN})
    assert bare.status_code == 401
    assert "error" in bare.json()
    assert by_query.json()["current"] == qstash_local.DEV_CURRENT_SIGNING_KEY
    assert h.state.messages == {}


async def test_rotated_keys_sign_later_deliveries(harness: Harness) -> None:
    h = harness
    before = await h.client.signing_key.get()
    after = await h.client.signing_key.rotate()
    assert after.current == before.next
    assert after.next.startswith("sig_")
    assert after.next != before.next
    await h.client.message.publish(url=h.sink.url("/rot"), body="signed")
    [delivery] = await eventually(lambda: h.sink.at("/rot"))
    signature = delivery.headers["Upstash-Signature"]
    verify_with_key(after.current, signature=signature, body="signed", url=delivery.url)
    with pytest.raises(SignatureError):
        verify_with_key(before.current, signature=signature, body="signed", url=delivery.url)


BAD_PUBLISHES: list[tuple[str, dict[str, str], int, str]] = [
    ("ftp://example.com/x", {}, 400, "endpoint has invalid scheme, add http:// or https://"),
    ("localhost:9/x", {}, 400, "invalid scheme"),
    ("no-such-group", {}, 404, "no-such-group"),
    ("http://127.0.0.1:9/x", {"Upstash-Delay": "10x"}, 400, "10x"),
    ("http://127.0.0.1:9/x", {"Upstash-Timeout": "soon"}, 400, "soon"),
    ("http://127.0.0.1:9/x", {"Upstash-Retries": "-1"}, 400, "-1"),
    ("http://127.0.0.1:9/x", {"Upstash-Method": "FETCH"}, 400, "FETCH"),
    ("http://127.0.0.1:9/x", {"Upstash-Retry-Delay": "__import__('os')"}, 400, "__import__"),
    ("http://127.0.0.1:9/x", {"Upstash-Retry-Delay": "pow(2)"}, 400, "pow"),
    ("http://127.0.0.1:9/x", {"Upstash-Callback": "nope"}, 400, "invalid scheme"),
    (
        "http://127.0.0.1:9/x",
        {"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "speed=3"},
        400,
        "speed=3",
    ),
]


@pytest.mark.parametrize(("destination", "headers", "status", "text"), BAD_PUBLISHES)
async def test_bad_publish_answers_an_error_and_changes_nothing(
    harness: Harness, destination: str, headers: dict[str, str], status: int, text: str
) -> None:
    h = harness
    before = _snapshot(h)
    async with httpx.AsyncClient(base_url=h.server.url) as http:
        answer = await http.post(f"/v2/publish/{destination}", headers={**AUTH, **headers})
    assert answer.status_code == status
    assert text in answer.json()["error"]
    assert _snapshot(h) == before


BAD_REQUESTS: list[tuple[str, str, dict[str, str], bytes, int]] = [
    ("POST", "/v2/batch", {}, b"[{not json", 400),
    ("POST", "/v2/batch", {}, b'{"destination": "http://x"}', 400),
    (
        "POST",
        "/v2/batch",
        {},
        b'[{"destination": "http://127.0.0.1:9/a"}, {"destination": "ftp://b"}]',
        400,
    ),
    ("POST", "/v2/publish/http://127.0.0.1:9/big", {}, b"x" * (1024 * 1024 + 1), 413),
    ("POST", "/v2/schedules/http://127.0.0.1:9/s", {"Upstash-Cron": "every minute"}, b"", 400),
    (
        "POST",
        "/v2/schedules/http://127.0.0.1:9/s",
        {"Upstash-Cron": "CRON_TZ=Mars/Base * * * * *"},
        b"",
        400,
    ),
    ("POST", "/v2/schedules/http://127.0.0.1:9/s", {}, b"", 400),
    (
        "POST",
        "/v2/schedules/http://127.0.0.1:9/s",
        {"Upstash-Cron": "* * * * *", "Upstash-Schedule-Id": "a b"},
        b"",
        400,
    ),
    ("POST", "/v2/enqueue/bad queue!/http://127.0.0.1:9/q", {}, b"", 400),
    ("POST", "/v2/queues", {}, b'{"queueName": "q", "parallelism": 0}', 400),
    ("GET", "/v2/messages/msg_missing", {}, b"", 404),
    ("DELETE", "/v2/messages/msg_missing", {}, b"", 404),
    ("GET", "/v2/dlq/1-1", {}, b"", 404),
    ("DELETE", "/v2/dlq/1-1", {}, b"", 404),
    ("POST", "/v2/dlq/retry/1-1", {}, b"", 404),
    ("GET", "/v2/schedules/scd_missing", {}, b"", 404),
    ("DELETE", "/v2/schedules/scd_missing", {}, b"", 404),
    ("PATCH", "/v2/schedules/scd_missing/pause", {}, b"", 404),
    ("GET", "/v2/queues/missing", {}, b"", 404),
    ("GET", "/v2/topics/missing", {}, b"", 404),
    ("GET", "/v2/flowControl/missing", {}, b"", 404),
    ("GET", "/v2/events?state=WAITING", {}, b"", 400),
    ("GET", "/v2/nothing-here", {}, b"", 404),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), BAD_REQUESTS)
async def test_bad_request_answers_json_error_and_changes_nothing(
    harness: Harness, method: str, path: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    h = harness
    before = _snapshot(h)
    async with httpx.AsyncClient(base_url=h.server.url) as http:
        answer = await http.request(method, path, headers={**AUTH, **headers}, content=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert isinstance(error, str)
    assert error
    assert _snapshot(h) == before


async def test_queue_with_parallelism_1_delivers_one_at_a_time_in_order(harness: Harness) -> None:
    h = harness
    active = {"now": 0, "max": 0}

    async def one_at_a_time(d: Delivery) -> web.Response:
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        await asyncio.sleep(0.005)
        active["now"] -= 1
        return web.Response(text="ok")

    h.sink.respond("/q", one_at_a_time)
    await h.client.queue.upsert("orders", parallelism=1)
    for i in range(8):
        await h.client.message.enqueue_json(queue="orders", url=h.sink.url("/q"), body=i)
    await eventually(lambda: len(h.sink.at("/q")) == 8, what="8 deliveries")
    assert [int(d.body) for d in h.sink.at("/q")] == list(range(8))
    assert active["max"] == 1
    queue = await h.client.queue.get("orders")
    assert (queue.parallelism, queue.paused) == (1, False)


async def test_paused_queue_holds_messages_until_resumed(harness: Harness) -> None:
    h = harness
    await h.client.queue.upsert("held", paused=True)
    assert (await h.client.queue.get("held")).paused is True
    res = await h.client.message.enqueue(queue="held", url=h.sink.url("/held"), body="x")
    assert (await h.client.queue.get("held")).lag == 1
    assert await h.events(res.message_id) == ["CREATED"]  # type: ignore[union-attr]
    await h.client.queue.resume("held")
    await h.wait_state(res.message_id, "DELIVERED")  # type: ignore[union-attr]
    assert (await h.client.queue.get("held")).lag == 0
    await h.client.queue.delete("held")
    assert [q.name for q in await h.client.queue.list()] == []


async def test_flow_control_rate_holds_messages_in_the_waitlist(harness: Harness) -> None:
    h = harness
    limits = {"key": "fc", "rate": 2, "period": 60}
    items: list[Any] = [
        {"url": h.sink.url("/fc"), "body": i, "flow_control": limits} for i in range(4)
    ]
    await h.client.message.batch_json(items)
    info = await h.client.flow_control.get("fc")
    assert (info.rate_max, info.rate_count, info.wait_list_size) == (2, 2, 2)
    await eventually(lambda: len(h.sink.at("/fc")) == 2, what="the first two deliveries")
    await h.client.flow_control.reset_rate("fc")  # a new period releases the next two
    await eventually(lambda: len(h.sink.at("/fc")) == 4, what="the rest after reset")
    assert sorted(int(d.body) for d in h.sink.at("/fc")) == [0, 1, 2, 3]
    message = await h.client.message.get(h.sink.at("/fc")[0].headers["Upstash-Message-Id"])
    assert message.flow_control is not None
    assert (message.flow_control.rate, message.flow_control.parallelism) == (2, None)
    assert message.flow_control.period == 60


async def test_flow_control_parallelism_1_never_overlaps_deliveries(harness: Harness) -> None:
    h = harness
    active = {"now": 0, "max": 0}

    async def tracked(d: Delivery) -> web.Response:
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        await asyncio.sleep(0.005)
        active["now"] -= 1
        return web.Response(text="ok")

    h.sink.respond("/par", tracked)
    fc: Any = {"key": "one-at-a-time", "parallelism": 1}
    for i in range(5):
        await h.client.message.publish(url=h.sink.url("/par"), body=str(i), flow_control=fc)
    await eventually(lambda: len(h.sink.at("/par")) == 5, what="5 deliveries")
    assert active["max"] == 1


async def test_flow_control_pause_pin_unpin_and_reset(harness: Harness) -> None:
    h = harness
    await h.client.flow_control.pause("fk")
    await h.client.message.publish(
        url=h.sink.url("/fk"), body="x", flow_control={"key": "fk", "parallelism": 5}
    )
    assert (await h.client.flow_control.get("fk")).wait_list_size == 1
    await h.client.flow_control.pin("fk", {"parallelism": 3, "rate": 20, "period": 120})
    info = await h.client.flow_control.get("fk")
    assert (info.parallelism_max, info.rate_max, info.rate_period) == (3, 20, 120)
    assert (info.is_pinned_parallelism, info.is_pinned_rate, info.is_paused) == (True, True, True)
    await h.client.flow_control.unpin("fk", {"parallelism": True, "rate": False})
    info = await h.client.flow_control.get("fk")
    assert (info.is_pinned_parallelism, info.is_pinned_rate) == (False, True)
    await h.client.flow_control.resume("fk")
    await eventually(lambda: h.sink.at("/fk"), what="delivery after resume")
    await h.client.flow_control.reset_rate("fk")
    assert (await h.client.flow_control.get("fk")).rate_count == 0
    glob = await h.client.flow_control.get_global_parallelism()
    assert isinstance(glob.parallelism_max, int)


async def test_events_filter_by_state_and_label_and_page_with_a_cursor(harness: Harness) -> None:
    h = harness
    for i in range(3):
        res = await h.client.message.publish(url=h.sink.url("/ev"), body="x", label=f"l{i}")
        await h.wait_state(res.message_id, "DELIVERED")  # type: ignore[union-attr]
    delivered = await h.client.log.list(filter={"state": LogState.DELIVERED})
    assert len(delivered.logs) == 3
    labelled = await h.client.log.list(filter={"label": "l1"})
    assert {log.label for log in labelled.logs} == {"l1"}
    assert len(labelled.logs) == 3
    page = await h.client.log.list(count=4)
    assert page.cursor is not None
    rest = await h.client.log.list(count=100, cursor=page.cursor)
    assert len(page.logs) + len(rest.logs) == 9
    assert rest.cursor is None


async def test_redacted_fields_are_masked_in_the_api_but_delivered_in_full(
    harness: Harness,
) -> None:
    h = harness
    res = await h.client.message.publish(
        url=h.sink.url("/secret"),
        body="card=4242",
        headers={"Authorization": "Bearer s3cret", "X-Plain": "p"},
        redact={"body": True, "header": ["Authorization"]},
    )
    [delivery] = await eventually(lambda: h.sink.at("/secret"))
    assert delivery.body == b"card=4242"
    assert delivery.headers["Authorization"] == "Bearer s3cret"
    message = await h.client.message.get(res.message_id)  # type: ignore[union-attr]
    assert message.body is not None
    assert message.body.startswith("REDACTED:")
    assert message.headers is not None
    assert message.headers["Authorization"][0].startswith("REDACTED:")
    assert message.headers["X-Plain"] == ["p"]


async def test_deleting_a_queue_cancels_its_waiting_messages(harness: Harness) -> None:
    h = harness
    await h.client.queue.upsert("doomed", paused=True)
    res = await h.client.message.enqueue(queue="doomed", url=h.sink.url("/doomed"), body="x")
    await h.client.queue.delete("doomed")
    assert (await h.events(res.message_id))[-1] == "CANCELED"  # type: ignore[union-attr]
    with pytest.raises(QStashError, match="404"):
        await h.client.queue.get("doomed")
