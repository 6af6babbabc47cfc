"""Filters, bulk DLQ actions and listings as every official SDK sends them (issue 11).

Each test runs against qstash_local, and against the real QStash when the contract run is
switched on (``JOBTRAIL_CONTRACT_QSTASH=1``, see README). Calls on the real service are
scoped by labels unique to the run; the few unscoped destructive checks are local only.
Where the Python SDK cannot express a request (repeated keys, ``count`` on bulk actions,
``dlqIds`` in the query) it is sent as the TypeScript SDK sends it, over raw HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from qstash.log import LogState

from tests.qstash_support import Target, target

__all__ = ["target"]
T = TypeVar("T")
Params = list[tuple[str, str]]


async def settle(target: Target, read: Callable[[], Awaitable[T]], expected: T) -> T:
    """Read until the answer is ``expected`` (the real QStash lists with a small lag)."""
    deadline = time.monotonic() + target.within
    while True:
        value = await read()
        if value == expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02 if target.local else 1.0)


def local_only(target: Target, why: str) -> None:
    if not target.local:
        pytest.skip(f"local only: {why}")


# --- 1. repeated filter keys are lists (ANY of the values) ---------------------------------

MESSAGE_KEYS = ["url", "host", "path", "label", "flowControlKey"]


def _variant(target: Target, key: str, name: str) -> tuple[dict[str, Any], str]:
    """Publish options that give a message its own value of ``key``, and that value."""
    hosts = {"a": "example.com", "b": "example.org", "c": "example.net"}
    url = target.parked_url(host=hosts[name], path=name)
    match key:
        case "url":
            return {"url": url}, url
        case "host":
            return {"url": url}, hosts[name]
        case "path":
            return {"url": url}, f"/{target.run}/{name}"
        case "label":
            return {"url": url, "label": target.label(key + name)}, target.label(key + name)
        case "flowControlKey":
            fc = f"{target.run}_{name}"
            return {"url": url, "flow_control": {"key": fc, "parallelism": 1}}, fc
    raise AssertionError(key)


async def _park_variants(target: Target, key: str) -> tuple[Params, list[str], list[str]]:
    """Park messages a, b, c differing in ``key``; return the run's scope, ids and values."""
    scope = [] if key == "label" else [("label", target.label(key))]
    ids, values = [], []
    for name in "abc":
        options, value = _variant(target, key, name)
        options.setdefault("label", target.label(key))
        ids.append(await target.park(**options))
        values.append(value)
    return scope, ids, values


@pytest.mark.parametrize("key", MESSAGE_KEYS)
async def test_events_filter_with_a_repeated_key_matches_any_value(
    target: Target, key: str
) -> None:
    scope, (a, b, c), values = await _park_variants(target, key)
    params = [*scope, (key, values[0]), (key, values[1])]
    assert await settle(target, lambda: target.events_of(params), {a, b}) == {a, b}
    one = [*scope, (key, values[2])]
    assert await settle(target, lambda: target.events_of(one), {c}) == {c}


@pytest.mark.parametrize("key", MESSAGE_KEYS)
async def test_bulk_cancel_with_a_repeated_key_cancels_any_value(target: Target, key: str) -> None:
    scope, (_, _, c), values = await _park_variants(target, key)
    status, body = await target.raw(
        "DELETE", "/v2/messages", [*scope, (key, values[0]), (key, values[1])]
    )
    assert (status // 100, body["cancelled"]) == (2, 2), body
    assert (await target.client.message.get(c)).message_id == c
    status, body = await target.raw("DELETE", "/v2/messages", [*scope, (key, values[2])])
    assert body["cancelled"] == 1, body


async def test_comma_joined_values_are_a_list_too(target: Target) -> None:
    label = target.label("comma")
    a = await target.park(target.label("ca"))
    b = await target.park(target.label("cb"))
    await target.park(label)
    params = [("label", f"{target.label('ca')},{target.label('cb')}")]
    assert await settle(target, lambda: target.events_of(params), {a, b}) == {a, b}


@pytest.mark.parametrize("key", ["url", "label", "flowControlKey", "responseStatus"])
async def test_dlq_filters_with_a_repeated_key_match_any_value(target: Target, key: str) -> None:
    scope = target.label("dlq" + key)
    values: list[str] = []
    for i, name in enumerate("abc"):
        label = target.label(f"dlq{key}{name}") if key == "label" else scope
        fc = f"{target.run}_dlq{name}"
        status = 500 + i if key == "responseStatus" else 500
        options: dict[str, Any] = {"flow_control": {"key": fc, "parallelism": 1}}
        await target.dead_letter(label, 1, path=f"d{key}{name}", status=status, **options)
        entry = (await target.client.dlq.list(filter={"label": label})).messages[-1]
        values.append(
            {"url": entry.url, "label": label, "flowControlKey": fc}.get(key, str(status))
        )
    base = [] if key == "label" else [("label", scope)]
    listed = [*base, (key, values[0]), (key, values[1])]
    status, body = await target.raw("GET", "/v2/dlq", listed)
    assert status == 200, body
    assert sorted(str(m[key]) for m in body["messages"]) == sorted(values[:2]), body
    status, body = await target.raw("DELETE", "/v2/dlq", listed)
    assert (status, body["deleted"]) == (200, 2), body
    status, body = await target.raw("GET", "/v2/dlq", [*base, (key, values[2])])
    assert len(body["messages"]) == 1, body


# --- 2. count bounds bulk DLQ delete and retry ----------------------------------------------


async def test_dlq_bulk_delete_count_1_deletes_one_and_answers_a_cursor(target: Target) -> None:
    local_only(target, "an unscoped bulk delete would touch every DLQ entry of the account")
    label = target.label("count")
    await target.dead_letter(label, 18)
    status, body = await target.raw("DELETE", "/v2/dlq", [("count", "1")])
    assert (status, body["deleted"]) == (200, 1), body
    assert body.get("cursor"), body
    assert len(await target.dlq_ids(label)) == 17
    status, body = await target.raw(
        "DELETE", "/v2/dlq", [("count", "100"), ("cursor", body["cursor"])]
    )
    assert (status, body["deleted"], body.get("cursor")) == (200, 17, None), body
    assert await target.dlq_ids(label) == []


async def test_dlq_bulk_delete_count_with_a_label_pages_with_the_cursor(target: Target) -> None:
    label = target.label("countlabel")
    await target.dead_letter(label, 3)
    status, body = await target.raw("DELETE", "/v2/dlq", [("label", label), ("count", "1")])
    assert (status, body["deleted"]) == (200, 1), body
    assert body.get("cursor"), body
    assert len(await target.dlq_ids(label)) == 2
    deleted, cursor = 1, body["cursor"]
    for _ in range(5):
        params = [("label", label), ("count", "1"), ("cursor", cursor)]
        status, body = await target.raw("DELETE", "/v2/dlq", params)
        deleted += body["deleted"]
        if not body.get("cursor"):
            break
        cursor = body["cursor"]
    assert deleted == 3
    assert await target.dlq_ids(label) == []


async def test_dlq_bulk_retry_count_1_retries_one_and_answers_a_cursor(target: Target) -> None:
    local_only(target, "an unscoped bulk retry would touch every DLQ entry of the account")
    label = target.label("retrycount")
    await target.dead_letter(label, 18)
    status, body = await target.raw("POST", "/v2/dlq/retry", [("count", "1")])
    assert (status, len(body["responses"])) == (201, 1), body
    assert body.get("cursor"), body
    assert set(body["responses"][0]) >= {"messageId"}


async def test_dlq_bulk_retry_count_with_a_label_pages_with_the_cursor(target: Target) -> None:
    label = target.label("retrylabel")
    originals = set(await target.dead_letter(label, 3))
    status, body = await target.raw("POST", "/v2/dlq/retry", [("label", label), ("count", "1")])
    assert (status, len(body["responses"])) == (201, 1), body
    assert body.get("cursor"), body
    params = [("label", label), ("count", "2"), ("cursor", body["cursor"])]
    status, body = await target.raw("POST", "/v2/dlq/retry", params)
    assert (status, len(body["responses"])) == (201, 2), body
    assert originals.isdisjoint(await target.dlq_ids(label))


async def test_bulk_cancel_ignores_count(target: Target) -> None:
    """The TS SDK sends count=100 with every filter cancel; QStash ignores it (OpenAPI)."""
    label = target.label("cancelcount")
    for _ in range(3):
        await target.park(label)
    status, body = await target.raw("DELETE", "/v2/messages", [("label", label), ("count", "1")])
    assert (status // 100, body["cancelled"]) == (2, 3), body


# --- 3. an unknown filter key is a 400 naming it ---------------------------------------------

FILTER_ENDPOINTS = [
    ("GET", "/v2/dlq"),
    ("DELETE", "/v2/dlq"),
    ("POST", "/v2/dlq/retry"),
    ("GET", "/v2/events"),
    ("GET", "/v2/logs"),
    ("DELETE", "/v2/messages"),
]


@pytest.mark.parametrize(("method", "path"), FILTER_ENDPOINTS)
async def test_unknown_filter_key_is_a_400_naming_it_and_changes_nothing(
    target: Target, method: str, path: str
) -> None:
    label = target.label("typo")
    dlq = await target.dead_letter(label, 2)
    parked = await target.park(label)
    status, body = await target.raw(method, path, [("label", label), ("labeel", "x")])
    assert status == 400, body
    assert "labeel" in body["error"]
    assert sorted(await target.dlq_ids(label)) == sorted(dlq)
    assert (await target.client.message.get(parked)).message_id == parked


async def test_typo_never_widens_a_bulk_dlq_delete(target: Target) -> None:
    """The issue's reproduction: DELETE /v2/dlq?labeel=x&count=100 deleted the whole DLQ."""
    local_only(target, "unscoped on purpose")
    ids = await target.dead_letter(target.label("widen"), 3)
    status, body = await target.raw("DELETE", "/v2/dlq", [("labeel", "x"), ("count", "100")])
    assert status == 400, body
    assert "labeel" in body["error"]
    assert sorted(await target.dlq_ids(target.label("widen"))) == sorted(ids)


@pytest.mark.parametrize("key", ["host", "path"])
async def test_dlq_rejects_host_and_path_filters(target: Target, key: str) -> None:
    """The TS SDK documents that the DLQ endpoint rejects host/path (logs and cancel take them)."""
    ids = await target.dead_letter(target.label("hostpath"), 1)
    params = [("label", target.label("hostpath")), (key, "x")]
    for method, path in FILTER_ENDPOINTS[:3]:
        status, body = await target.raw(method, path, params)
        assert status == 400, (method, path, body)
        assert key in body["error"]
    assert await target.dlq_ids(target.label("hostpath")) == ids


async def test_every_filter_the_python_sdk_sends_is_accepted(target: Target) -> None:
    label = target.label("pysdk")
    [dlq_id] = await target.dead_letter(label, 1)
    entry = await target.client.dlq.get(dlq_id)
    dlq = await target.client.dlq.list(
        count=10,
        filter={
            "message_id": entry.message_id,
            "url": entry.url,
            "url_group": "none",
            "queue": "none",
            "schedule_id": "none",
            "from_time": 0,
            "to_time": int(time.time() * 1000) + 60_000,
            "response_status": 500,
            "caller_ip": entry.caller_ip or "127.0.0.1",
            "label": label,
        },
    )
    assert dlq.messages == []
    logs = await target.client.log.list(
        count=10,
        filter={
            "message_id": entry.message_id,
            "message_ids": [entry.message_id],
            "state": LogState.FAILED,
            "url": entry.url,
            "queue": "none",
            "schedule_id": "none",
            "from_time": 0,
            "to_time": int(time.time() * 1000) + 60_000,
            "label": label,
        },
    )
    assert logs.logs == []
    found = await target.client.dlq.list(
        filter={"message_id": entry.message_id, "url": entry.url, "response_status": 500}
    )
    assert [m.dlq_id for m in found.messages] == [dlq_id]


async def test_requests_shaped_like_the_typescript_sdk_are_accepted(target: Target) -> None:
    """dlqIds and messageIds repeated in the query, count and cursor, the query token."""
    label = target.label("tssdk")
    a, b, _ = await target.dead_letter(label, 3)
    status, body = await target.raw(
        "GET", "/v2/dlq", [("count", "10"), ("dlqIds", a), ("dlqIds", b)]
    )
    assert status == 200, body
    assert sorted(m["dlqId"] for m in body["messages"]) == sorted([a, b])
    status, body = await target.raw("DELETE", "/v2/dlq", [("dlqIds", a), ("dlqIds", b)])
    assert (status, body["deleted"]) == (200, 2), body
    params = [("label", label), ("count", "100"), ("qstash_token", target.token)]
    status, body = await target.raw("POST", "/v2/dlq/retry", params)
    assert (status, len(body["responses"])) == (201, 1), body
    x = await target.park(label)
    y = await target.park(label)
    status, body = await target.raw(
        "DELETE", "/v2/messages", [("messageIds", x), ("messageIds", y)]
    )
    assert (status // 100, body["cancelled"]) == (2, 2), body
    fields = [("fromDate", "0"), ("toDate", str(int(time.time() * 1000) + 60_000))]
    status, body = await target.raw(
        "GET", "/v2/events", [("label", label), ("count", "5"), *fields]
    )
    assert status == 200, body


# --- 4. no body, no "body" field ---------------------------------------------------------------


async def test_message_without_a_body_is_listed_without_a_body_field(target: Target) -> None:
    label = target.label("nobody")
    res = await target.client.message.publish(url=target.parked_url(), delay="1h", label=label)
    message_id = res.message_id  # type: ignore[union-attr]
    status, message = await target.raw("GET", f"/v2/messages/{message_id}")
    assert status == 200, message
    assert "body" not in message and "bodyBase64" not in message, message
    params = [("label", label)]
    await settle(target, lambda: target.events_of(params), {message_id})
    status, body = await target.raw("GET", "/v2/events", params)
    assert body["events"] and all("body" not in e for e in body["events"]), body


async def test_dlq_entry_without_a_body_has_no_body_field(target: Target) -> None:
    [dlq_id] = await target.dead_letter(target.label("nobodydlq"), 1, body=None)
    status, entry = await target.raw("GET", f"/v2/dlq/{dlq_id}")
    assert status == 200, entry
    assert "body" not in entry and "bodyBase64" not in entry, entry


async def test_schedule_without_a_body_is_listed_without_a_body_field(target: Target) -> None:
    schedule_id = await target.client.schedule.create(
        destination=target.parked_url(path="schedule"), cron="0 0 1 1 *"
    )
    try:
        status, schedule = await target.raw("GET", f"/v2/schedules/{schedule_id}")
        assert status == 200, schedule
        assert "body" not in schedule and "bodyBase64" not in schedule, schedule
        status, listed = await target.raw("GET", "/v2/schedules")
        [mine] = [s for s in listed if s["scheduleId"] == schedule_id]
        assert "body" not in mine, mine
        assert (await target.client.schedule.get(schedule_id)).body is None
    finally:
        await target.client.schedule.delete(schedule_id)
