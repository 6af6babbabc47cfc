"""Publishing through the official SDK and receiving signed deliveries from qstash_local."""

from __future__ import annotations

import json
import time

import httpx
from aiohttp import web

import qstash_local
from tests.qstash_support import Harness, ThreadedHarness, eventually, harness, threaded, wait_sync

__all__ = ["harness", "threaded"]


async def test_publish_delivers_body_and_headers_of_the_protocol(harness: Harness) -> None:
    h = harness
    url = h.sink.url("/hook?job=7&x=a%2Fb")
    res = await h.client.message.publish_json(
        url=url, body={"hello": "world"}, headers={"X-Job-Id": "j1"}, method="PUT", label="nightly"
    )
    [delivery] = await eventually(lambda: h.sink.at("/hook"), what="delivery")
    assert delivery.url == url  # destination rebuilt from the raw path and query
    assert delivery.method == "PUT"
    assert json.loads(delivery.body) == {"hello": "world"}
    headers = delivery.headers
    assert headers["X-Job-Id"] == "j1"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Upstash-QStash"
    assert headers["Upstash-Message-Id"] == res.message_id
    assert headers["Upstash-Retried"] == "0"
    assert "Upstash-Forward-X-Job-Id" not in headers
    message = await h.client.message.get(res.message_id)
    assert message.url == url
    assert message.method == "PUT"
    assert message.label == "nightly"
    assert message.headers is not None
    assert message.headers["X-Job-Id"] == ["j1"]
    assert await h.wait_state(res.message_id, "DELIVERED") == ["CREATED", "ACTIVE", "DELIVERED"]


async def test_raw_body_without_content_type_is_delivered_byte_for_byte(harness: Harness) -> None:
    h = harness
    body = "h\u00e9llo \u2713\r\n  ".encode()  # qstash.Receiver can only check UTF-8 bodies
    await h.client.message.publish(url=h.sink.url("/raw"), body=body)
    [delivery] = await eventually(lambda: h.sink.at("/raw"))
    assert delivery.body == body
    assert "Content-Type" not in delivery.headers


async def test_batch_json_publishes_every_item_in_order_of_the_response(harness: Harness) -> None:
    h = harness
    items = [{"url": h.sink.url(f"/b{i}"), "body": {"i": i}} for i in range(5)]
    responses = await h.client.message.batch_json(items)
    assert len(responses) == 5
    for i, response in enumerate(responses):
        [delivery] = await eventually(lambda i=i: h.sink.at(f"/b{i}"))
        assert delivery.headers["Upstash-Message-Id"] == response.message_id  # type: ignore[union-attr]
        assert json.loads(delivery.body) == {"i": i}


async def test_deduplication_id_returns_the_existing_message_and_delivers_once(
    harness: Harness,
) -> None:
    h = harness
    first = await h.client.message.publish(url=h.sink.url("/d"), body="a", deduplication_id="k1")
    second = await h.client.message.publish(url=h.sink.url("/d"), body="b", deduplication_id="k1")
    assert second.message_id == first.message_id  # type: ignore[union-attr]
    assert second.deduplicated is True  # type: ignore[union-attr]
    await h.wait_state(first.message_id, "DELIVERED")  # type: ignore[union-attr]
    assert [d.body for d in h.sink.at("/d")] == [b"a"]


async def test_content_based_deduplication_matches_same_body_only(harness: Harness) -> None:
    h = harness
    url = h.sink.url("/c")
    a = await h.client.message.publish(url=url, body="same", content_based_deduplication=True)
    b = await h.client.message.publish(url=url, body="same", content_based_deduplication=True)
    c = await h.client.message.publish(url=url, body="other", content_based_deduplication=True)
    assert b.deduplicated
    assert b.message_id == a.message_id
    assert not c.deduplicated
    assert c.message_id != a.message_id
    await eventually(lambda: len(h.sink.at("/c")) == 2)


async def test_delayed_messages_arrive_in_order_of_their_delays(harness: Harness) -> None:
    h = harness
    late = await h.client.message.publish(url=h.sink.url("/late"), body="late", delay="2s")
    now = int(time.time())
    soon = await h.client.message.publish(url=h.sink.url("/soon"), body="soon", delay=1)
    message = await h.client.message.get(late.message_id)  # type: ignore[union-attr]
    assert message.not_before >= (now + 1) * 1000
    await eventually(lambda: h.sink.at("/late"), within=6)
    assert h.sink.at("/soon")[0].at < h.sink.at("/late")[0].at
    assert await h.events(soon.message_id) == ["CREATED", "ACTIVE", "DELIVERED"]  # type: ignore[union-attr]


async def test_not_before_in_the_past_delivers_at_once(harness: Harness) -> None:
    h = harness
    await h.client.message.publish(url=h.sink.url("/nb"), body="x", not_before=1, delay="1d")
    await eventually(lambda: h.sink.at("/nb"))


async def test_url_group_publish_fans_out_to_every_endpoint(harness: Harness) -> None:
    h = harness
    await h.client.url_group.upsert_endpoints(
        "team", [{"url": h.sink.url("/e1"), "name": "one"}, {"url": h.sink.url("/e2")}]
    )
    results = await h.client.message.publish(url_group="team", body="fan")
    assert isinstance(results, list)
    assert sorted(r.url for r in results) == [h.sink.url("/e1"), h.sink.url("/e2")]
    [d1] = await eventually(lambda: h.sink.at("/e1"))
    [_] = await eventually(lambda: h.sink.at("/e2"))
    assert d1.headers["Upstash-Topic-Name"] == "team"
    group = await h.client.url_group.get("team")
    assert [e.name for e in group.endpoints] == ["one", None]
    await h.client.url_group.remove_endpoints("team", [{"name": "one"}, {"url": h.sink.url("/e2")}])
    assert await h.client.url_group.list() == []
    await h.client.url_group.delete("never-existed")  # idempotent, as the SDK's tests need


async def test_sync_client_publishes_and_reads_back(threaded: ThreadedHarness) -> None:
    t = threaded
    res = t.client.message.publish_json(url=t.sink.url("/sync"), body=[1, 2])
    wait_sync(lambda: t.sink.at("/sync"), what="delivery")
    assert t.client.message.get(res.message_id).body == "[1, 2]"  # type: ignore[union-attr]
    keys = t.client.signing_key.get()
    assert keys.current == "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
    assert keys.next == "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"


async def test_get_deliveries_send_the_published_method(harness: Harness) -> None:
    h = harness
    h.sink.respond("/g", lambda d: web.Response(status=204))
    res = await h.client.message.publish(url=h.sink.url("/g"), method="GET")
    [delivery] = await eventually(lambda: h.sink.at("/g"))
    assert delivery.method == "GET"
    await h.wait_state(res.message_id, "DELIVERED")  # type: ignore[union-attr]


async def test_query_token_and_upstash_query_config_are_split_from_the_destination(
    harness: Harness,
) -> None:
    h = harness
    h.sink.respond("/qs", lambda d: web.Response(status=500))
    async with httpx.AsyncClient(base_url=h.server.url) as http:
        answer = await http.post(
            f"/v2/publish/{h.sink.url('/qs')}?keep=1&upstash-retries=0"
            f"&qstash_token={qstash_local.DEV_TOKEN}",
            content=b"q",
        )
    assert answer.status_code == 200
    message_id = answer.json()["messageId"]
    await h.wait_state(message_id, "FAILED")
    [delivery] = h.sink.at("/qs")
    assert delivery.url == h.sink.url("/qs?keep=1")
    assert (await h.client.message.get(message_id)).max_retries == 0
