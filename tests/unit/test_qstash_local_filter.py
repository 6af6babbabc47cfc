"""The one query-filter parser of qstash_local: lists, unknown keys, what each SDK sends."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from qstash_local import spec as specs
from qstash_local.api import filter as filters
from qstash_local.error import BadRequest
from qstash_local.message import Message


def _message(**fields: str) -> Message:
    headers = {"Upstash-Label": "red", "Upstash-Flow-Control-Key": "fk-1"}
    headers["Upstash-Flow-Control-Value"] = "parallelism=1"
    return Message(
        id=fields.get("id", "msg_1"),
        url=fields.get("url", "https://a.example/x/y?q=1"),
        spec=specs.parse_spec(headers),
        body=b"",
        created_at_ms=1_000,
        not_before_ms=1_000,
        topic_name=fields.get("topic_name", "group-1"),
        queue_name=fields.get("queue_name", "queue-1"),
        schedule_id=fields.get("schedule_id", "scd_1"),
        caller_ip=fields.get("caller_ip", "10.0.0.1"),
    )


LIST_KEYS = [
    ("url", "https://a.example/x/y?q=1"),
    ("topicName", "group-1"),
    ("urlGroup", "group-1"),
    ("queueName", "queue-1"),
    ("scheduleId", "scd_1"),
    ("callerIp", "10.0.0.1"),
    ("callerIP", "10.0.0.1"),
    ("flowControlKey", "fk-1"),
    ("label", "red"),
    ("host", "a.example"),
    ("path", "/x/y"),
    ("messageId", "msg_1"),
    ("messageIds", "msg_1"),
]


@pytest.mark.parametrize(("key", "value"), LIST_KEYS)
def test_every_list_filter_matches_any_of_its_repeated_values(key: str, value: str) -> None:
    message = _message()
    first = MultiDict([(key, value), (key, "other")])
    last = MultiDict([(key, "other"), (key, value)])
    neither = MultiDict([(key, "other"), (key, "another")])
    for query, expected in ((first, True), (last, True), (neither, False)):
        parsed = filters.parse_filter(query, filters.EVENTS | {"urlGroup", "callerIP"})
        assert parsed.matches(message, 1_000) is expected, (key, query)


def test_comma_joined_values_are_a_list() -> None:
    parsed = filters.parse_filter(MultiDict(label="blue, red"), filters.DLQ_LIST)
    assert parsed.labels == {"blue", "red"}
    assert parsed.matches(_message(), 1_000)


def test_different_keys_must_all_match() -> None:
    query = MultiDict([("label", "red"), ("queueName", "queue-2")])
    assert not filters.parse_filter(query, filters.CANCEL).matches(_message(), 1_000)


@pytest.mark.parametrize(
    ("accepted", "key"),
    [
        (filters.DLQ_LIST, "labeel"),
        (filters.DLQ_BULK, "labeel"),
        (filters.EVENTS, "urls"),
        (filters.CANCEL, "queue"),
        (filters.DLQ_LIST, "host"),
        (filters.DLQ_BULK, "path"),
        (filters.CANCEL, "state"),
    ],
)
def test_a_key_the_endpoint_does_not_take_is_a_400_naming_it(
    accepted: frozenset[str], key: str
) -> None:
    with pytest.raises(BadRequest, match=f"'{key}'"):
        filters.parse_filter(MultiDict([("label", "red"), (key, "x")]), accepted)


# What qstash 3.4.0 (dlq.py prepare_list_dlq_messages_params, log.py
# prepare_list_logs_request_params) and @upstash/qstash 2.12.0 (listMessages, logs,
# buildBulkActionFilterPayload, renameUrlGroup) put in the query, plus the query token.
PYTHON_DLQ = "cursor count messageId url topicName queueName scheduleId fromDate toDate"
PYTHON_DLQ += " responseStatus callerIp label"
PYTHON_LOGS = "cursor count messageId messageIds state url topicName queueName scheduleId"
PYTHON_LOGS += " fromDate toDate label"
TS_SHARED = "fromDate toDate callerIp label flowControlKey url topicName scheduleId queueName"
TS_DLQ_LIST = TS_SHARED + " count dlqIds cursor messageId responseStatus"
TS_DLQ_BULK = TS_SHARED + " count cursor dlqIds messageId responseStatus"
TS_LOGS = TS_SHARED + " count messageIds cursor host path state messageId"
TS_CANCEL = TS_SHARED + " count messageIds host path"


@pytest.mark.parametrize(
    ("accepted", "keys"),
    [
        (filters.DLQ_LIST, PYTHON_DLQ),
        (filters.EVENTS, PYTHON_LOGS),
        (filters.DLQ_LIST, TS_DLQ_LIST),
        (filters.DLQ_BULK, TS_DLQ_BULK),
        (filters.EVENTS, TS_LOGS),
        (filters.CANCEL, TS_CANCEL),
    ],
)
def test_every_key_an_official_sdk_sends_is_accepted(accepted: frozenset[str], keys: str) -> None:
    sample = {"state": "DELIVERED", "responseStatus": "500"}
    query = MultiDict([(k, sample.get(k, "1")) for k in [*keys.split(), "qstash_token"]])
    filters.parse_filter(query, accepted)


@pytest.mark.parametrize(
    ("given", "states"),
    [
        (["IN_PROGRESS"], {"ACTIVE", "RETRY", "ERROR"}),
        (["delivered", "FAILED"], {"DELIVERED", "FAILED"}),
        (["CANCELLED"], {"CANCELED"}),
    ],
)
def test_state_filter_takes_several_states_and_the_in_progress_alias(
    given: list[str], states: set[str]
) -> None:
    query = MultiDict([("state", s) for s in given])
    assert filters.parse_filter(query, filters.EVENTS).states == states


@pytest.mark.parametrize(("key", "value"), [("state", "DONE"), ("responseStatus", "5xx")])
def test_bad_state_or_status_is_a_400_naming_the_value(key: str, value: str) -> None:
    accepted = filters.EVENTS | filters.DLQ_LIST
    with pytest.raises(BadRequest, match=value):
        filters.parse_filter(MultiDict({key: value}), accepted)


def test_response_status_is_a_list_of_integers() -> None:
    query = MultiDict([("responseStatus", "500"), ("responseStatus", "404")])
    parsed = filters.parse_filter(query, filters.DLQ_BULK)
    assert parsed.accepts_status(404) and parsed.accepts_status(500)
    assert not parsed.accepts_status(502)
