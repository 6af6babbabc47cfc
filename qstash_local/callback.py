"""Callback and failure-callback messages (protocol §5.6)."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from qstash_local import expression, ident
from qstash_local.dlq import Outcome
from qstash_local.message import Message
from qstash_local.spec import CallbackOptions, Spec


def callback_body(message: Message, outcome: Outcome, dlq_id: str | None) -> bytes:
    """The JSON body QStash posts to a callback after an attempt.

    UNVERIFIED: with no HTTP response (connection error, timeout) status is 0 and header
    and body are empty; notBefore/createdAt are strings as in the docs' example.
    """
    out: dict[str, Any] = {
        "status": outcome.status,
        "header": outcome.headers,
        "body": base64.b64encode(outcome.body).decode(),
        "retried": message.retried,
        "maxRetries": message.max_retries,
        "sourceMessageId": message.id,
        "url": message.url,
        "method": message.spec.method,
        "sourceHeader": message.spec.delivered_headers(),
        "sourceBody": base64.b64encode(message.body).decode(),
        "notBefore": str(message.not_before_ms),
        "createdAt": str(message.created_at_ms),
    }
    optional = {
        "dlqId": dlq_id,
        "topicName": message.topic_name,
        "endpointName": message.endpoint_name,
        "scheduleId": message.schedule_id,
        "callerIP": message.caller_ip,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return orjson.dumps(out)


def callback_message(message: Message, url: str, options: CallbackOptions, body: bytes) -> Message:
    """A new message to ``url`` carrying ``body``, configured by ``options``.

    Retries and retry delay default to the source message's own (docs: "uses the
    original message's retry setting unless overridden").
    """
    retry_delay = options.retry_delay or message.spec.retry_delay
    spec = Spec(
        method=options.method,
        content_type="application/json",
        headers=options.headers,
        retries=message.spec.retries if options.retries is None else options.retries,
        retry_delay=retry_delay,
        retry_delay_fn=None if retry_delay is None else expression.compile_expression(retry_delay),
        delay_s=options.delay_s,
        timeout_s=options.timeout_s,
        labels=message.spec.labels,
    )
    now_ms = int(time.time() * 1000)
    return Message(
        id=ident.message_id(),
        url=url,
        spec=spec,
        body=body,
        created_at_ms=now_ms,
        not_before_ms=now_ms + int(options.delay_s * 1000),
        caller_ip=message.caller_ip,
        source_id=message.id,
    )
