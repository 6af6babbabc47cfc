"""Input written the way the seed's users write it means what it says, or is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest

import jobstore
from jobstore import duration
from jobstore.validation import validate_model


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (60, 60.0),
        (0.5, 0.5),
        (timedelta(minutes=2), 120.0),
        ("60s", 60.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1h30m3s", 5403.0),
        ("1d10h30m", 124200.0),
        (" 5m ", 300.0),
    ],
)
def test_durations_are_seconds_timedeltas_or_qstash_text(given: object, seconds: float) -> None:
    assert duration.to_seconds(given) == seconds
    assert jobstore.EnqueueJobOptions(delay=given).delay_seconds == seconds  # type: ignore[arg-type]
    if seconds <= 86400:  # a job's timeout is at most a day
        config = jobstore.JobConfig(type="t", endpoint="/t", retries=0, timeout=given)  # type: ignore[arg-type]
        assert config.timeout == seconds


@pytest.mark.parametrize(
    "bad", ["60", "5x", "1.5h", "m", "", "-5s", True, None, [60], -1, float("inf")]
)
def test_a_bad_duration_names_the_value_and_what_is_accepted(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a duration") as caught:
        duration.to_seconds(bad)
    assert repr(bad)[:20] in str(caught.value)


def test_a_bad_delay_is_a_validation_error_saying_what_would_do() -> None:
    with pytest.raises(jobstore.JobValidationError) as caught:
        validate_model(jobstore.EnqueueJobOptions, {"delay": "60"}, "options")
    (line,) = caught.value.validation_errors
    assert line.startswith("options.delay: ")
    assert "'60' is not a duration" in line and "'5m'" in line and "seconds as a number" in line
    with pytest.raises(jobstore.JobValidationError, match="691200 seconds is not between"):
        validate_model(jobstore.EnqueueJobOptions, {"delay": "8d"}, "options")
    with pytest.raises(pydantic.ValidationError, match="timeout"):
        jobstore.JobConfig(type="t", endpoint="/t", retries=0, timeout="2d")


def test_seed_metadata_names_set_the_fields() -> None:
    created = datetime(2026, 1, 2, tzinfo=UTC)
    metadata = jobstore.BaseJobMetadata.model_validate(
        {
            "userId": 7,
            "organizationId": 42,
            "idempotencyKey": "signup-7",
            "createdAt": created.isoformat(),
            "traceId": "abc",
        }
    )
    assert (metadata.user_id, metadata.organization_id) == (7, 42)
    assert (metadata.idempotency_key, metadata.created_at) == ("signup-7", created)
    dumped = metadata.model_dump(mode="json")
    assert "userId" not in dumped and dumped["traceId"] == "abc", "other keys kept as given"


def test_both_spellings_agreeing_are_one_value_and_disagreeing_an_error() -> None:
    same = jobstore.BaseJobMetadata.model_validate({"userId": 7, "user_id": 7})
    assert same.user_id == 7 and "userId" not in same.model_dump()
    with pytest.raises(jobstore.JobValidationError) as caught:
        validate_model(jobstore.BaseJobMetadata, {"user_id": 8, "userId": 7}, "metadata")
    (line,) = caught.value.validation_errors
    assert "user_id=8" in line and "userId=7" in line


def test_jobstore_registry_is_the_module_and_the_shared_registry_has_its_own_name() -> None:
    import types

    assert isinstance(jobstore.registry, types.ModuleType)
    assert jobstore.registry.JobRegistry is jobstore.JobRegistry
    assert isinstance(jobstore.shared_registry, jobstore.JobRegistry)
    assert (
        jobstore.get_job_config("send-email") is jobstore.shared_registry.get("send-email").config
    )
