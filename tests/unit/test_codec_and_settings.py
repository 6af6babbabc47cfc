"""Pure pieces of jobstore: the JSON codec's refusals, settings, the query loader."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobstore
from jobstore import codec, event, query, settings


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": ["ok", "bad\x00"]}, r"data\.a\[1\] contains a NUL"),
        ({"x": float("nan")}, r"data\.x is nan"),
        ({1: "int key"}, "non-string key 1"),
    ],
)
def test_codec_refuses_what_postgres_or_json_cannot_hold(value: object, message: str) -> None:
    with pytest.raises(jobstore.InvalidEventError, match=message):
        codec.dumps(value, what="data")


def test_codec_round_trips_unicode_and_big_numbers() -> None:
    value = {"name": "Zoë ✓", "n": 2**53, "f": 0.1, "nested": [None, True, {"k": []}]}
    assert codec.loads(codec.dumps(value)) == value


def test_root_gets_a_data_folder_whose_parents_are_already_traversable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings.os, "geteuid", lambda: 0)
    assert settings.default_data_dir() == Path("/var/lib/jobtrail")
    monkeypatch.setattr(settings.os, "geteuid", lambda: 1000)
    assert settings.default_data_dir() != Path("/var/lib/jobtrail")


def test_settings_read_upstash_and_database_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("QSTASH_TOKEN", "tok-8e1f2a")
    monkeypatch.setenv("JOBTRAIL_DATA_DIR", "/srv/jt")
    s = jobstore.Settings()
    assert s.database_url == "postgresql://u@h/db"
    assert s.qstash_token is not None
    assert s.qstash_token.get_secret_value() == "tok-8e1f2a"
    assert "tok-8e1f2a" not in repr(s)  # a secret type: never in a log line or a repr
    assert s.pgdata_dir == Path("/srv/jt/pgdata")


def test_query_loader_maps_names_to_sql() -> None:
    queries = query.load("jobstore", "store.sql")
    assert "read_all" in queries
    assert queries["read_all"].startswith("SELECT")
    assert "-- params" not in queries["read_all"]


def test_unknown_event_type_error_lists_known_types() -> None:
    with pytest.raises(jobstore.UnknownEventTypeError, match=r"job\.dispatched"):
        event.event_class("no.such.type")


def test_registering_a_type_string_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):

        class Clash(jobstore.Event, type_name="job.dispatched"):
            pass
