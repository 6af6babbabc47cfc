"""A message: one destination, one body, and its delivery state."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Any

from yarl import URL

from qstash_local import signature
from qstash_local.spec import Redact, Spec

PENDING_STATES = frozenset({"CREATED", "ACTIVE", "RETRY", "ERROR"})


@dataclasses.dataclass(slots=True, eq=False)
class Message:
    """A message in qstash_local, from publish until it is delivered, failed or cancelled."""

    id: str
    url: str
    spec: Spec
    body: bytes
    created_at_ms: int
    not_before_ms: int
    topic_name: str | None = None
    endpoint_name: str | None = None
    queue_name: str | None = None
    schedule_id: str | None = None
    caller_ip: str | None = None
    source_id: str | None = None
    state: str = "CREATED"
    retried: int = 0
    next_delivery_ms: int | None = None
    finished_at: float | None = None
    holds_slot: bool = False
    body_sha: str = ""
    target: URL | None = None
    base_headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.body_sha = signature.body_hash(self.body)
        try:
            self.target = URL(self.url, encoded=True)
        except ValueError:
            self.target = None
        self.base_headers = self._delivery_headers()

    def _delivery_headers(self) -> dict[str, str]:
        headers = {name: value for name, value in self.spec.headers}
        if self.spec.content_type is not None:
            headers["Content-Type"] = self.spec.content_type
        # UNVERIFIED whether the dev server sends upstash-region; it is left out.
        headers["User-Agent"] = "Upstash-QStash"
        headers["Upstash-Message-Id"] = self.id
        if self.topic_name is not None:
            headers["Upstash-Topic-Name"] = self.topic_name
        if self.schedule_id is not None:
            headers["Upstash-Schedule-Id"] = self.schedule_id
        if self.caller_ip is not None:
            headers["Upstash-Caller-Ip"] = self.caller_ip
        return headers

    @property
    def pending(self) -> bool:
        """Whether the message still waits for (or is in) a delivery attempt."""
        return self.state in PENDING_STATES

    @property
    def max_retries(self) -> int:
        """How many retries follow the first attempt."""
        return self.spec.retries


def redacted(data: bytes) -> str:
    """Return QStash's redaction marker for ``data``."""
    return "REDACTED:" + hashlib.sha256(data).hexdigest()


def body_fields(body: bytes, redact: Redact) -> dict[str, str]:
    """Return ``{"body": text}`` for UTF-8 bodies, else ``{"bodyBase64": ...}``.

    No body, no field: QStash omits both keys for a message or schedule without one.
    """
    if not body:
        return {}
    if redact.body:
        return {"body": redacted(body)}
    try:
        return {"body": body.decode()}
    except UnicodeDecodeError:
        return {"bodyBase64": base64.b64encode(body).decode()}


def header_map(headers: dict[str, list[str]], redact: Redact) -> dict[str, list[str]]:
    """Apply header redaction to a ``{Name: [values]}`` map."""
    if not (redact.all_headers or redact.headers):
        return headers
    return {
        name: [
            redacted(v.encode()) if redact.all_headers or name in redact.headers else v
            for v in values
        ]
        for name, values in headers.items()
    }


def _callback_header(options_headers: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in options_headers:
        out.setdefault(name, []).append(value)
    return out


def common_fields(message: Message) -> dict[str, Any]:
    """The keys shared by messages, DLQ entries and log rows."""
    spec = message.spec
    out: dict[str, Any] = {"messageId": message.id, "url": message.url, "method": spec.method}
    optional = {
        "topicName": message.topic_name,
        "endpointName": message.endpoint_name,
        "queueName": message.queue_name,
        "scheduleId": message.schedule_id,
        "callback": spec.callback,
        "failureCallback": spec.failure_callback,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if spec.labels:
        out["label"] = spec.labels[0]
        out["labels"] = list(spec.labels)
    out.update(flow_control_fields(spec))
    return out


def flow_control_fields(spec: Spec) -> dict[str, Any]:
    """Flow-control keys: period defaults to 1, parallelism and rate only when given."""
    fc = spec.flow_control
    if fc is None:
        return {}
    out: dict[str, Any] = {"flowControlKey": fc.key, "period": fc.period_s}
    if fc.parallelism is not None:
        out["parallelism"] = fc.parallelism
    if fc.rate is not None:
        out["rate"] = fc.rate
    return out


def callback_header_fields(spec: Spec) -> dict[str, Any]:
    """``callbackHeader`` / ``failureCallbackHeader`` maps, when any were given."""
    out: dict[str, Any] = {}
    if spec.callback_options.headers:
        out["callbackHeader"] = _callback_header(spec.callback_options.headers)
    if spec.failure_callback_options.headers:
        out["failureCallbackHeader"] = _callback_header(spec.failure_callback_options.headers)
    return out


def message_json(message: Message) -> dict[str, Any]:
    """Render a message as ``GET /v2/messages/{id}`` returns it."""
    spec = message.spec
    out = common_fields(message)
    out.update(body_fields(message.body, spec.redact))
    out["header"] = header_map(spec.delivered_headers(), spec.redact)
    out.update(callback_header_fields(spec))
    out["maxRetries"] = spec.retries
    out["notBefore"] = message.not_before_ms
    out["createdAt"] = message.created_at_ms
    if spec.retry_delay is not None:
        out["retryDelayExpression"] = spec.retry_delay
    if message.caller_ip is not None:
        out["callerIP"] = message.caller_ip
    return out
