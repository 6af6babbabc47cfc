"""Dispatch options: one typed model, its defaults stated once, old events read unchanged."""

from __future__ import annotations

import orjson

from jobstore import DispatchOptions, JobConfig, envelope, job_events
from jobstore.event import decode

LEGACY_API_OPTIONS = {
    "endpoint": "/api/jobs/send-email",
    "retries": 2,
    "timeout": 30.0,
    "qstash_timeout": 60,
    "not_before": None,
    "callback": None,
    "failure_callback": "https://hooks.example/failed",
    "headers": {"X-Team": "billing"},
}


def _dispatched(options: dict[str, object]) -> job_events.JobDispatched:
    data = {
        "job_id": "0b5c7f6e-9a43-4f3e-8f8b-1d2f1c6a9e01",
        "dispatch": 1,
        "job_type": "send-email",
        "payload": {},
        "metadata": {},
        "options": options,
        "source": "api",
        "reason": None,
    }
    event = decode("job.dispatched", 1, data)
    assert isinstance(event, job_events.JobDispatched)
    return event


def test_options_written_before_the_model_read_unchanged() -> None:
    options = _dispatched(LEGACY_API_OPTIONS).options

    assert options.retries == 2
    assert options.timeout == 30.0
    assert options.qstash_timeout == 60  # derived again, equal to what was stored
    assert options.failure_callback == "https://hooks.example/failed"
    assert options.headers == {"X-Team": "billing"}


def test_a_scheduled_run_of_an_unknown_type_has_the_stated_defaults() -> None:
    options = _dispatched({"retries": 0, "timeout": 30.0}).options

    assert options == DispatchOptions()
    assert options.endpoint is None
    assert (options.retries, options.timeout) == (0, 30.0)


def test_for_job_takes_the_type_defaults_and_only_the_given_overrides() -> None:
    config = JobConfig(type="charge", endpoint="/jobs/charge", retries=5, timeout=20)

    plain = DispatchOptions.for_job(config)
    custom = DispatchOptions.for_job(config, retries=1, not_before=None, headers={"A": "b"})

    assert (plain.endpoint, plain.retries, plain.timeout) == ("/jobs/charge", 5, 20.0)
    assert (custom.retries, custom.timeout, custom.headers) == (1, 20.0, {"A": "b"})
    assert custom.not_before is None


def test_a_recovery_keeps_the_delay_that_is_left_and_everything_else() -> None:
    options = DispatchOptions(endpoint="/x", retries=3, not_before=2e9, callback="https://a.b/c")

    assert options.remaining_delay(now=1.5e9) == options
    assert options.remaining_delay(now=2e9) == options.model_copy(update={"not_before": None})


def test_the_relay_body_is_what_the_host_parses() -> None:
    event = _dispatched(LEGACY_API_OPTIONS)

    parsed = envelope.parse(orjson.dumps(envelope.job_body(event)))

    assert parsed == envelope.JobDelivery(event.job_id, 1, "send-email")
