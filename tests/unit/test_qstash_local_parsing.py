"""Pure parsers of qstash_local: retry-delay expressions, durations, headers, cron."""

from __future__ import annotations

import datetime
import math

import pytest
from multidict import CIMultiDict

from qstash_local import duration, expression, retry
from qstash_local.error import BadRequest
from qstash_local.schedule import parse_cron
from qstash_local.spec import parse_spec


@pytest.mark.parametrize(
    ("text", "retried", "expected"),
    [
        ("1000", 0, 1000),
        ("1000 * (1 + retried)", 2, 3000),
        ("pow(2, retried) * 1000", 3, 8000),
        ("max(1000, pow(2, retried) * 100)", 1, 1000),
        ("7000 * retried", 0, 0),
        ("-5 + 10 / 2 * 3", 0, 10),
        ("min(sqrt(16), abs(-3)) + floor(1.7) + ceil(0.2) + round(2.4)", 0, 7),
        ("exp(0) * 500", 0, 500),
    ],
)
def test_retry_delay_expressions_evaluate_to_milliseconds(
    text: str, retried: int, expected: float
) -> None:
    assert expression.delay_ms(expression.compile_expression(text), retried) == expected


@pytest.mark.parametrize(
    "text",
    ["", "__import__('os').system('x')", "1 +", "pow(2)", "foo(1)", "2 ** 3", "(1", "1)", "a"],
)
def test_bad_retry_delay_expressions_are_rejected_with_the_text(text: str) -> None:
    with pytest.raises(BadRequest, match="Upstash-Retry-Delay"):
        expression.compile_expression(text)


def test_unusable_expression_values_clamp_to_zero_or_a_day() -> None:
    assert expression.delay_ms(expression.compile_expression("0 - 5"), 0) == 0
    assert expression.delay_ms(expression.compile_expression("1 / 0"), 0) == 86_400_000
    assert expression.delay_ms(expression.compile_expression("exp(1000)"), 0) == 86_400_000


def test_default_backoff_follows_the_documented_table() -> None:
    assert [round(retry.default_backoff_s(n), 1) for n in range(5)] == [
        12.2,
        148.4,
        1808.0,
        22026.5,
        86400.0,
    ]


@pytest.mark.parametrize(
    ("text", "seconds"), [("50s", 50), ("1d10h30m", 124200), ("1h30m3s", 5403), ("250ms", 0.25)]
)
def test_durations_parse_into_seconds(text: str, seconds: float) -> None:
    assert duration.parse_duration(text, name="Upstash-Delay") == seconds


@pytest.mark.parametrize("text", ["", "10", "10x", "1.5s", "s", "-3s"])
def test_bad_durations_name_the_value(text: str) -> None:
    with pytest.raises(BadRequest, match="Upstash-Delay"):
        duration.parse_duration(text, name="Upstash-Delay")


def test_retry_hints_accept_seconds_go_durations_and_dates_up_to_a_day() -> None:
    now = 1_700_000_000.0
    assert duration.parse_retry_hint("30", now) == 30
    assert duration.parse_retry_hint("6m5s", now) == 365
    assert duration.parse_retry_hint("1500ms", now) == 1.5
    date = datetime.datetime.fromtimestamp(now + 90, tz=datetime.UTC)
    assert duration.parse_retry_hint(date.strftime("%a, %d %b %Y %H:%M:%S GMT"), now) == 90
    assert duration.parse_retry_hint("90000", now) is None
    assert duration.parse_retry_hint("soon", now) is None


def test_publish_headers_parse_like_the_python_sdk_sends_them() -> None:
    spec = parse_spec(
        CIMultiDict(
            {
                "Content-Type": "application/json",
                "Upstash-Method": "put",
                "Upstash-Forward-x-job-id": "7",
                "Upstash-Callback-K": "v",
                "Upstash-Callback-Forward-Tenant": "t",
                "Upstash-Callback-Retries": "1",
                "Upstash-Content-Based-Deduplication": "True",
                "Upstash-Flow-Control-Key": "fc",
                "Upstash-Flow-Control-Value": "rate=23, period=1h30m3s",
                "Upstash-Label": "a,b",
                "Upstash-Delay": "10s",
            }
        )
    )
    assert spec.method == "PUT"
    assert spec.delivered_headers() == {"Content-Type": ["application/json"], "X-Job-Id": ["7"]}
    assert dict(spec.callback_options.headers) == {"K": "v", "Tenant": "t"}
    assert spec.callback_options.retries == 1
    assert spec.content_dedup is True
    assert spec.flow_control is not None
    assert (spec.flow_control.rate, spec.flow_control.parallelism) == (23, None)
    assert spec.flow_control.period_s == 5403
    assert spec.labels == ("a", "b")
    assert spec.delay_s == 10
    assert spec.retries == 3


def test_cron_accepts_five_fields_and_a_time_zone_prefix() -> None:
    start = datetime.datetime(2030, 3, 1, 12, 0, 30, tzinfo=datetime.UTC).timestamp()
    assert parse_cron("*/5 * * * *").next_after(start) == start + 270
    ny = parse_cron("CRON_TZ=America/New_York 0 4 * * *").next_after(start)
    assert datetime.datetime.fromtimestamp(ny, tz=datetime.UTC).hour == 9
    assert not math.isnan(ny)


@pytest.mark.parametrize(
    "text", ["* * * *", "* * * * * *", "61 * * * *", "CRON_TZ=No/Where * * * * *"]
)
def test_bad_cron_is_rejected_with_the_expression(text: str) -> None:
    with pytest.raises(BadRequest, match="invalid cron"):
        parse_cron(text)
