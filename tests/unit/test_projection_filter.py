"""Filters, cursors and duration buckets: every bad input is a clear error naming it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstore import JOB_STATUSES
from projections import cursor, errors, histogram
from projections.filter import JobFilter, check_job_id
from projections.reader import check_limit

KEY = b"k"
WHEN = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_a_filter_parses_text_values() -> None:
    parsed = JobFilter.from_strings(
        {
            "status": "failed",
            "type": "send-email",
            "user_id": "42",
            "created_from": "2026-01-01T00:00:00Z",
            "created_to": "2026-02-01",
            "error_contains": "50%_off\\",
        }
    )
    assert parsed.status is JOB_STATUSES.FAILED
    assert parsed.user_id == 42
    assert parsed.created_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed.created_to == datetime(2026, 2, 1, tzinfo=UTC)
    assert parsed.arguments()[6] == "%50\\%\\_off\\\\%"


def test_schedule_and_source_filters_parse_and_reach_the_query() -> None:
    parsed = JobFilter.from_strings({"schedule_id": "sched_1", "source": "replay"})
    assert (parsed.schedule_id, parsed.source) == ("sched_1", "replay")
    assert parsed.arguments()[7:] == ["sched_1", "replay"]
    assert parsed.digest() != JobFilter(schedule_id="sched_2", source="replay").digest()


def test_every_filter_is_a_parameter_of_the_api_and_the_cli() -> None:
    """The filter model is the one list: the API's query, its OpenAPI and the CLI follow it."""
    from typer.testing import CliRunner

    from projections import openapi
    from projections.filter import FILTER_PARAMETERS
    from workers.cli import app

    document = openapi.document()
    listed = {p["name"] for p in document["paths"]["/jobs"]["get"]["parameters"]}
    assert set(FILTER_PARAMETERS) <= listed
    body = document["components"]["schemas"]["FilterBody"]["properties"]
    assert set(FILTER_PARAMETERS) <= set(body)
    for command in ("list", "replay"):
        shown = CliRunner().invoke(app, ["jobs", command, "--help"], env={"COLUMNS": "200"})
        for name in FILTER_PARAMETERS:
            option = "--type" if name == "type" else f"--{name.replace('_', '-')}"
            assert option in shown.output, (command, option)


def test_a_bulk_replay_filter_must_select_something_replayable() -> None:
    with pytest.raises(errors.InvalidFilterError, match="needs at least one filter"):
        JobFilter().for_replay()
    with pytest.raises(errors.InvalidFilterError, match="'completed' jobs cannot be replayed"):
        JobFilter(status=JOB_STATUSES.COMPLETED).for_replay()
    assert JobFilter(source="schedule").for_replay().source == "schedule"


@pytest.mark.parametrize(
    ("params", "parameter", "says"),
    [
        ({"status": "done"}, "status", "not one of pending, processing"),
        ({"type": "Send Email"}, "type", "not a job type name"),
        ({"type": "x" * 101}, "type", "at most 100"),
        ({"user_id": "-3"}, "user_id", "not a positive integer"),
        ({"user_id": "1" * 20}, "user_id", "not a positive integer"),
        ({"organization_id": "0"}, "organization_id", "from 1 to"),
        ({"created_from": "yesterday"}, "created_from", "not an ISO 8601 time"),
        ({"error_contains": "a\x00b"}, "error_contains", "without NUL"),
        ({"error_contains": ""}, "error_contains", "1 to 200"),
        ({"colour": "red"}, "colour", "unknown filter"),
        ({"source": "cron"}, "source", "not one of api, schedule, replay, recovery"),
        ({"source": "API"}, "source", "not one of api"),
        ({"source": "api' OR '1'='1"}, "source", "not one of api"),
        ({"schedule_id": "s\x00"}, "schedule_id", "without NUL"),
        ({"schedule_id": "s" * 201}, "schedule_id", "1 to 200"),
        ({"schedule_id": ""}, "schedule_id", "1 to 200"),
        (
            {"created_from": "2026-02-01", "created_to": "2026-01-01"},
            "created_from",
            "is after created_to",
        ),
    ],
)
def test_a_bad_filter_names_its_parameter(
    params: dict[str, str], parameter: str, says: str
) -> None:
    with pytest.raises(errors.InvalidFilterError) as caught:
        JobFilter.from_strings(params)
    assert caught.value.parameter == parameter
    assert says in str(caught.value)


@pytest.mark.parametrize("limit", [0, 501, -1, True, 10**12, "50"])
def test_a_limit_outside_1_to_500_is_refused(limit: object) -> None:
    with pytest.raises(errors.InvalidFilterError, match=r"limit: .* from 1 to 500"):
        check_limit(limit)


def test_job_ids_must_be_uuids() -> None:
    assert check_job_id("9B2F6C1E-4B7A-4E57-8D1A-0C6A1F2B3C4D").startswith("9b2f6c1e-")
    with pytest.raises(errors.InvalidFilterError, match="job_id: 'nope' is not a job id"):
        check_job_id("nope")


def test_a_cursor_round_trips_for_its_filter_only() -> None:
    token = cursor.encode(KEY, cursor.Position(WHEN, "job-1"), "abc")
    assert cursor.decode(KEY, token, "abc") == cursor.Position(WHEN, "job-1")
    with pytest.raises(errors.InvalidCursorError, match="other filters"):
        cursor.decode(KEY, token, "xyz")
    with pytest.raises(errors.InvalidCursorError, match="not a cursor this server issued"):
        cursor.decode(b"another key", token, "abc")


@given(st.text(max_size=400))
def test_any_forged_or_mangled_cursor_is_a_clear_error(token: str) -> None:
    with pytest.raises(errors.InvalidCursorError):
        cursor.decode(KEY, token, "abc")


def test_a_cursor_with_one_byte_changed_is_refused() -> None:
    token = cursor.encode(KEY, cursor.Position(WHEN, "job-1"), "abc")
    for i in range(len(token)):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(errors.InvalidCursorError):
            cursor.decode(KEY, changed, "abc")


def test_durations_fall_in_fixed_buckets_and_percentiles_interpolate() -> None:
    assert histogram.bucket_of(0.0) == 0
    assert histogram.bucket_of(0.001) == 0
    assert histogram.bucket_of(0.0011) == 1
    assert histogram.bucket_of(1e9) == len(histogram.BOUNDS)
    counts = {histogram.bucket_of(1.0): 50, histogram.bucket_of(2.0): 50}
    assert histogram.percentile(counts, 50) == pytest.approx(1.0)
    assert 1.0 < (histogram.percentile(counts, 99) or 0) <= 2.5
    assert histogram.percentile({}, 50) is None
