"""Notifications travel in bundles: one QStash message for a page's notifications.

Every notification in a bundle is called and recorded; a bundle with a failed call is
answered 500 and, delivered again, calls again only the ones the log does not show
settled; a malformed notification does not sink the others; the notifier groups a page's
notifications by count and size, alone ones as themselves, under ids that a re-publication
after a crash repeats (so QStash drops the copy).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

import jobstore
from jobstore import job_events, notifier
from tests.host_support import Host, dispatched, free_port, running_host, serving

NOTIFY = jobstore.envelope.NOTIFY_PATH
BUNDLES = notifier.BUNDLE_PATH


@dataclasses.dataclass
class Receiver:
    """Callbacks received, by path; ``/flaky`` answers 503 to its first call."""

    port: int
    paths: list[str] = dataclasses.field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait(self, count: int, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while len(self.paths) < count:
            assert time.monotonic() < deadline, f"{len(self.paths)} of {count}: {self.paths}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver(free_port())

    async def record(request: web.Request) -> web.Response:
        await request.read()
        got.paths.append(request.path)
        if request.path.startswith("/flaky") and got.paths.count(request.path) == 1:
            return web.Response(status=503, text="not now")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{name}", record)
    async with serving(app, got.port):
        yield got


def note(job_id: str, url: str) -> dict[str, Any]:
    """A notification body as the notifier writes it (a failure, dispatch 1)."""
    return {
        "notification_id": f"{job_id}:1:failed",
        "url": url,
        "kind": "failed",
        "position": 1,
        "job": {"job_id": job_id, "job_type": "test-job", "dispatch": 1, "status": "failed"},
    }


async def notified(host: Host, job_id: str) -> list[job_events.JobNotified]:
    return [e for e in await host.events(job_id) if isinstance(e, job_events.JobNotified)]


async def failed_jobs(host: Host, callbacks: list[str]) -> list[str]:
    """Jobs that failed, one per failure callback URL, written straight into the log."""
    ids = []
    for url in callbacks:
        job_id = str(uuid.uuid4())
        await host.ctx.store.append(
            f"job-{job_id}", [dispatched(job_id, retries=0, failure_callback=url)], "no_stream"
        )
        await host.ctx.store.append(
            f"job-{job_id}",
            [job_events.JobFailed(dispatch=1, reason="test", error_type="X", error_message="y")],
        )
        ids.append(job_id)
    return ids


async def test_a_bundle_delivered_again_calls_only_the_callbacks_that_did_not_settle(
    db_dsn: str, receiver: Receiver
) -> None:
    async with running_host(db_dsn, relay=False, notifier=False) as host:
        urls = [receiver.url("/a"), receiver.url("/flaky"), receiver.url("/b")]
        ids = await failed_jobs(host, urls)
        bundle = {"notifications": [note(j, u) for j, u in zip(ids, urls, strict=True)]}

        status, body, _ = await host.post(BUNDLES, bundle, headers={"Upstash-Retried": "0"})
        assert status == 500, body
        assert sorted(receiver.paths) == ["/a", "/b", "/flaky"]
        assert [[n.result for n in await notified(host, j)] for j in ids] == [
            ["delivered"],
            ["error"],
            ["delivered"],
        ]

        status, body, _ = await host.post(BUNDLES, bundle, headers={"Upstash-Retried": "1"})
        assert status == 200, body
        assert sorted(receiver.paths) == ["/a", "/b", "/flaky", "/flaky"], "settled called again"
        assert [n.result for n in await notified(host, ids[1])] == ["error", "delivered"]

        status, body, _ = await host.post(BUNDLES, bundle, headers={"Upstash-Retried": "2"})
        assert status == 200, body
        assert len(receiver.paths) == 4


async def test_a_malformed_notification_in_a_bundle_does_not_sink_the_others(
    db_dsn: str, receiver: Receiver
) -> None:
    async with running_host(db_dsn, relay=False, notifier=False) as host:
        (job_id,) = await failed_jobs(host, [receiver.url("/a")])
        no_job_id = note(job_id, receiver.url("/b"))
        del no_job_id["job"]["job_id"]
        bundle = {
            "notifications": [{"kind": "nonsense"}, no_job_id, note(job_id, receiver.url("/a"))]
        }
        status, body, _ = await host.post(BUNDLES, bundle)
        assert status == 200, body
        assert receiver.paths == ["/a"]
        status, body, _ = await host.post(BUNDLES, bundle, headers={"Upstash-Retried": "1"})
        assert status == 200, body
        assert receiver.paths == ["/a"]
        assert [n.result for n in await notified(host, job_id)] == ["delivered"]


async def test_a_pages_notifications_reach_every_receiver_once_through_one_message(
    db_dsn: str, receiver: Receiver
) -> None:
    """Through qstash_local: the notifier catches up on six failures in one page; one
    receiver fails once, QStash delivers the bundle again, and only it is called again."""
    async with running_host(db_dsn, relay=False, notifier=False) as before:
        urls = [receiver.url(f"/r{i}") for i in range(5)] + [receiver.url("/flaky")]
        ids = await failed_jobs(before, urls)
    async with running_host(db_dsn, relay=False) as host:
        await receiver.wait(7)
        deadline = time.monotonic() + 15
        while [[n.result for n in await notified(host, j)][-1:] for j in ids] != [
            ["delivered"]
        ] * len(ids):
            assert time.monotonic() < deadline, "not every notification was delivered"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    assert sorted(receiver.paths) == sorted([*(f"/r{i}" for i in range(5)), "/flaky", "/flaky"])


class Recording:
    """A stand-in QStash client: the messages of every ``batch_json`` call."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.message = self

    async def batch_json(self, messages: list[dict[str, Any]]) -> list[Any]:
        self.messages += messages
        return [None for _ in messages]


async def test_the_notifier_bundles_a_page_and_publishes_the_same_bundles_again(
    store: jobstore.EventStore, db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seven completions with callbacks, three to a bundle: two bundles and a lone one;
    a notifier started over from the same checkpoint publishes the same messages."""
    monkeypatch.setattr(notifier, "BUNDLE", 3)
    completed = job_events.JobCompleted(dispatch=1, attempt=1, duration_seconds=0.1, result={})
    for i in range(7):
        job_id = f"job{i}"
        callback = f"http://127.0.0.1:9/{i}"
        await store.append(f"job-{job_id}", [dispatched(job_id, callback=callback), completed])
    await store.append("job-quiet", [dispatched("quiet"), completed])  # no callback

    published: list[list[dict[str, Any]]] = []
    for name in ("first", "again"):  # the second: as if restarted before its checkpoint
        qstash: Any = Recording()
        config = notifier.NotifierConfig(public_url="http://host.test", name=name)
        await notifier.Notifier(store, db_dsn, qstash, config).run_until_caught_up()
        published.append(qstash.messages)
    first, again = published
    assert first == again
    assert [m["url"] for m in first] == ["http://host.test" + p for p in (BUNDLES, BUNDLES, NOTIFY)]
    *bundled, lone = first
    ids = [[n["notification_id"] for n in m["body"]["notifications"]] for m in bundled]
    assert ids == [[f"job{i}:1:completed" for i in range(j, j + 3)] for j in (0, 3)]
    assert len({m["deduplication_id"] for m in bundled}) == 2
    assert lone["body"]["notification_id"] == "job6:1:completed"
    assert lone["deduplication_id"] == "job6-1-completed"


def test_bundles_keep_the_order_and_respect_count_and_size() -> None:
    small = [{"n": i} for i in range(7)]
    assert notifier.bundles(small) == [small[i : i + 50] for i in range(0, 7, 50)]
    big = [{"n": i, "pad": "x" * (notifier.BUNDLE_BYTES // 3)} for i in range(5)]
    groups = notifier.bundles(big)
    assert [b for g in groups for b in g] == big
    assert all(len(orjson.dumps(g)) <= notifier.BUNDLE_BYTES + 100 for g in groups)
    assert [len(g) for g in groups] == [2, 2, 1]
    many = [{"n": i} for i in range(notifier.BUNDLE * 2 + 1)]
    assert [len(g) for g in notifier.bundles(many)] == [notifier.BUNDLE, notifier.BUNDLE, 1]
