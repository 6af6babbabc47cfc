"""Turning a publish into messages: destination lookup, URL-group fan-out, deduplication."""

from __future__ import annotations

import dataclasses
import hashlib
import time

from qstash_local import ident
from qstash_local.dispatcher import Dispatcher
from qstash_local.error import NotFound
from qstash_local.message import Message
from qstash_local.spec import Spec, check_name, check_url
from qstash_local.state import DedupKey


@dataclasses.dataclass(slots=True, frozen=True)
class Target:
    """One URL a publish delivers to, and the group endpoint it came from."""

    url: str
    topic_name: str | None = None
    endpoint_name: str | None = None


@dataclasses.dataclass(slots=True, frozen=True)
class Published:
    """The answer for one target: the message id and whether it was a duplicate."""

    message_id: str
    url: str
    deduplicated: bool

    def json(self, *, with_url: bool) -> dict[str, object]:
        """Render as QStash's publish response item."""
        out: dict[str, object] = {"messageId": self.message_id}
        if with_url:
            out["url"] = self.url
        if self.deduplicated:
            out["deduplicated"] = True
        return out


def is_url(destination: str) -> bool:
    """Whether a destination is a URL (anything with a scheme or a slash) and not a group."""
    return "://" in destination or "/" in destination or ":" in destination


class Publisher:
    """Creates messages for publishes, batches, schedules and DLQ retries."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.state = dispatcher.state

    def targets(self, destination: str) -> list[Target]:
        """Resolve a URL or URL-group name into targets, or raise BadRequest/NotFound."""
        if is_url(destination):
            return [Target(check_url(destination, what="destination"))]
        check_name(destination, what="destination url group name")
        group = self.state.groups.get(destination)
        # UNVERIFIED: QStash's answer for an unknown group; 404 names what is missing.
        if group is None or not group.endpoints:
            raise NotFound(
                f"url group {destination!r} not found: a destination must be an http(s) URL "
                "or an existing URL group (POST /v2/topics/{name}/endpoints)"
            )
        return [Target(e.url, group.name, e.name) for e in group.endpoints]

    def publish(
        self,
        targets: list[Target],
        spec: Spec,
        body: bytes,
        *,
        queue_name: str | None = None,
        schedule_id: str | None = None,
        caller_ip: str | None = None,
    ) -> list[Published]:
        """Create (or deduplicate) one message per target and hand it to the dispatcher."""
        now_ms = int(time.time() * 1000)
        results = []
        for target in targets:
            key = _dedup_key(target, spec, body)
            existing = None if key is None else self.state.deduplicated(key)
            if existing is not None:
                results.append(Published(existing, target.url, True))
                continue
            message = Message(
                id=ident.message_id(),
                url=target.url,
                spec=spec,
                body=body,
                created_at_ms=now_ms,
                not_before_ms=_not_before_ms(spec, now_ms),
                topic_name=target.topic_name,
                endpoint_name=target.endpoint_name,
                queue_name=queue_name,
                schedule_id=schedule_id,
                caller_ip=caller_ip,
            )
            if key is not None:
                self.state.remember(key, message.id)
            self.dispatcher.submit(message)
            results.append(Published(message.id, target.url, False))
        return results


def _not_before_ms(spec: Spec, now_ms: int) -> int:
    """Upstash-Not-Before (unix seconds) wins over Upstash-Delay.

    UNVERIFIED: an immediate message reports its creation time as ``notBefore``.
    """
    if spec.not_before_s is not None:
        return spec.not_before_s * 1000
    return now_ms + int(spec.delay_s * 1000)


def _dedup_key(target: Target, spec: Spec, body: bytes) -> DedupKey | None:
    # UNVERIFIED: ids are scoped per destination URL, so a URL group deduplicates per
    # endpoint as the docs' example shows.
    if spec.dedup_id is not None:
        return ("id", target.url, spec.dedup_id)
    if not spec.content_dedup:
        return None
    digest = hashlib.sha256()
    for part in (target.url.encode(), body, (spec.content_type or "").encode()):
        digest.update(len(part).to_bytes(8, "big") + part)
    for name, value in sorted(spec.headers):
        digest.update(f"{name}:{value}\n".encode())
    return ("content", target.url, digest.hexdigest())
