"""Notifications are reactions to the log (DESIGN.md, delivery rule 5).

Whoever records a job's ``JobCompleted`` or ``JobFailed`` (the host after a handler, QStash's
verdict, the sweeper), this checkpointed follower of the log sees it.  When the job's
dispatch named a ``callback`` (completion) or ``failure_callback`` (failure), it publishes
a notification through QStash to the host's own signed endpoint (``NOTIFY_PATH``), and the
host makes the call under its address policy.  QStash retries until the host answers 2xx,
so a notification is delivered at least once and never lost: a crash before the publish
leaves the checkpoint behind and publishes again (deduplicated by QStash under the
notification id, and by receivers after QStash's ten-minute window).

The notifications of one page travel together: up to ``BUNDLE`` of them (and
``BUNDLE_BYTES``) in one QStash message, ``{"notifications": [...]}``, deduplicated under
their ids together; a lone one as itself.  The host calls each one's callback and, when
QStash retries the message because a callback failed, calls again only those whose call
the log does not show as settled (:func:`settled`), so each notification is still tried
until its receiver answers, and one failing receiver does not make the others called again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

import orjson
import structlog
from qstash import AsyncQStash
from qstash.message import BatchJsonRequest

from jobstore import envelope, follower, job_state, query
from jobstore.event import RecordedEvent
from jobstore.job_events import JobCompleted, JobFailed
from jobstore.relay import retrying
from jobstore.store import EventStore

log = structlog.get_logger("jobtrail.notifier")
_Q = query.load("jobstore", "notifier.sql")

LINGER: Final = 0.02
"""Seconds the notifier waits after a notification, from its last read, before reading
again (``FollowerConfig.linger``): completion callbacks leave up to 20 ms later, and a
steady trickle of jobs costs it one read and checkpoint per 20 ms instead of one per append."""
Kind = Literal["completed", "failed"]
NOTIFY_RETRIES = 5
QSTASH_BATCH = 100
MAX_BACKOFF_SECONDS = 10.0
BUNDLE_PATH: Final = envelope.NOTIFY_PATH + "/bundle"
"""Where bundles go: a host that predates them answers 404 there, which QStash retries
(at the notification path it would refuse one as malformed, for good)."""
BUNDLE: Final = 50
"""Notifications in one QStash message at most (one delivery, one signature check)."""
BUNDLE_BYTES: Final = 256 * 1024
"""Encoded bodies in one QStash message at most (its limit is 1 MiB)."""


def notification_id(job_id: str, dispatch: int, kind: Kind) -> str:
    """The id every delivery of one outcome's notification carries: job, dispatch, outcome."""
    return f"{job_id}:{dispatch}:{kind}"


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    """Where the host is and how the notifier follows the log."""

    public_url: str
    name: str = "notifications"
    follower: follower.FollowerConfig = field(
        default_factory=lambda: follower.FollowerConfig(linger=LINGER)
    )


class Notifier:
    """Publishes a notification for every recorded outcome of a job that asked for one."""

    handles: Final = follower.types_of(JobCompleted, JobFailed)
    """The event types :meth:`handle` acts on; its follower reads no others' data."""

    def __init__(
        self, store: EventStore, dsn: str, qstash: AsyncQStash, config: NotifierConfig
    ) -> None:
        self.store = store
        self.qstash = qstash
        self.config = config
        self.published = 0
        self.follower = follower.Follower(store, config.name, self, dsn=dsn, config=config.follower)

    async def run(self) -> None:
        """Notify forever (one notifier per database at a time)."""
        await self.follower.run()

    async def run_until_caught_up(self) -> int:
        """Publish the notifications of everything in the log up to now."""
        return await self.follower.run_until_caught_up()

    async def handle(self, batch: Sequence[RecordedEvent], commit: follower.Commit) -> None:
        """Publish the batch's notifications; the checkpoint moves once QStash has them."""
        outcomes = [
            r for r in batch if isinstance(r.event, JobCompleted | JobFailed) and _job_id(r)
        ]
        if not outcomes:
            return
        wanted = await self._callbacks({_job_id(r) for r in outcomes})
        bodies = [b for r in outcomes if (b := self._body(r, wanted)) is not None]
        messages = [self._message(bundle) for bundle in bundles(bodies)]
        for start in range(0, len(messages), QSTASH_BATCH):
            chunk = cast("list[BatchJsonRequest]", messages[start : start + QSTASH_BATCH])
            await self._publish(chunk)
        self.published += len(bodies)
        if bodies:
            log.info("notifications published", count=len(bodies), messages=len(messages))

    async def _publish(self, chunk: list[BatchJsonRequest]) -> None:
        """Publish, waiting out QStash being unreachable (the checkpoint waits too)."""
        await retrying(lambda: self.qstash.message.batch_json(chunk), MAX_BACKOFF_SECONDS)

    async def _callbacks(self, job_ids: set[str]) -> dict[tuple[str, int], dict[str, Any]]:
        """The options (callbacks) of every dispatch of these jobs, by (job id, dispatch)."""
        streams = [job_state.stream_id(job_id) for job_id in job_ids]
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch(_Q["dispatch_callbacks"], streams)
        return {
            (row["stream_id"][4:], row["dispatch"]): {
                "job_type": row["job_type"],
                "callback": row["callback"],
                "failure_callback": row["failure_callback"],
            }
            for row in rows
        }

    def _message(self, bundle: list[dict[str, Any]]) -> dict[str, Any]:
        """The QStash message of ``bundle``: its one notification, or them all together."""
        ids = [body["notification_id"] for body in bundle]
        if len(bundle) == 1:
            body, dedup, path = bundle[0], ids[0].replace(":", "-"), envelope.NOTIFY_PATH
        else:
            body = {"notifications": bundle}
            dedup = "bundle-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:40]
            path = BUNDLE_PATH
        return {
            "url": self.config.public_url.rstrip("/") + path,
            "body": body,
            "retries": NOTIFY_RETRIES,
            "deduplication_id": dedup,
            "label": "jobtrail-notification",
        }

    def _body(
        self, recorded: RecordedEvent, wanted: dict[tuple[str, int], dict[str, Any]]
    ) -> dict[str, Any] | None:
        event = recorded.event
        job_id = _job_id(recorded)
        assert isinstance(event, JobCompleted | JobFailed)
        callbacks = wanted.get((job_id, event.dispatch), {})
        kind: Kind = "completed" if isinstance(event, JobCompleted) else "failed"
        url = callbacks.get("callback" if kind == "completed" else "failure_callback")
        if not url:
            return None
        return {
            "notification_id": notification_id(job_id, event.dispatch, kind),
            "url": url,
            "kind": kind,
            "position": recorded.position,
            "job": {
                "job_id": job_id,
                "job_type": callbacks.get("job_type"),
                "dispatch": event.dispatch,
                "status": kind,
                **_details(event),
            },
        }


def bundles(bodies: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``bodies`` in order, in groups of at most BUNDLE and BUNDLE_BYTES encoded."""
    groups: list[list[dict[str, Any]]] = []
    size = 0
    for body in bodies:
        length = len(orjson.dumps(body))
        if not groups or len(groups[-1]) >= BUNDLE or size + length > BUNDLE_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(body)
        size += length
    return groups


async def settled(
    store: EventStore, notifications: Sequence[tuple[str, str]], results: Sequence[str]
) -> set[str]:
    """Of these (job id, notification id), those with a ``JobNotified`` of one of ``results``
    in their job's history (the host's final results: not called again)."""
    streams = sorted({job_state.stream_id(job_id) for job_id, _ in notifications})
    ids = [nid for _, nid in notifications]
    rows = await store.pool.fetch(_Q["settled_notifications"], streams, ids, list(results))
    return {row["notification_id"] for row in rows}


def _job_id(recorded: RecordedEvent) -> str:
    return recorded.stream_id[4:] if recorded.stream_id.startswith("job-") else ""


def _details(event: JobCompleted | JobFailed) -> dict[str, Any]:
    if isinstance(event, JobCompleted):
        result = event.result if len(orjson.dumps(event.result)) <= 16 * 1024 else None
        return {
            "attempt": event.attempt,
            "duration_seconds": event.duration_seconds,
            "result": result,
        }
    return {
        "attempt": event.attempt,
        "reason": event.reason,
        "error_type": event.error_type,
        "error_message": event.error_message,
    }
