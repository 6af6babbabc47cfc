"""The one classification of driver errors, the one retry policy, and QStash's 429 resets."""

from __future__ import annotations

import time

import asyncpg
import pytest
from qstash.errors import DailyMessageLimitExceededError, QStashError, RateLimitExceededError

from jobstore import DatabaseUnavailableError, EventStoreError, RetryPolicy, is_transient
from jobstore.relay import is_transient as qstash_transient
from jobstore.relay import throttled_for


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CrashShutdownError("terminating connection because of crash"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        ConnectionRefusedError(111, "Connect call failed"),
        TimeoutError(),
        DatabaseUnavailableError(),
    ],
    ids=type,
)
def test_connection_level_failures_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.UndefinedTableError("relation does not exist"),
        EventStoreError("the event store failed"),
        ValueError("bad input"),
    ],
    ids=type,
)
def test_errors_about_the_work_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_delays_double_up_to_the_cap_with_bounded_jitter() -> None:
    delays = RetryPolicy(first=1.0, cap=8.0, jitter=0.25).delays()
    got = [delays.next() for _ in range(6)]
    for value, base in zip(got, [1, 2, 4, 8, 8, 8], strict=True):
        assert 0.75 * base <= value <= base
    assert delays.next(at_least=20.0) == 20.0  # a server's reset wins over the cap
    delays.reset()
    assert delays.next() <= 1.0


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="first <= cap"):
        RetryPolicy(first=5, cap=1)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.5)


def test_a_429_waits_until_the_reset_qstash_named() -> None:
    in_ten = str(int(time.time()) + 10)
    assert 8 < (throttled_for(RateLimitExceededError("1", "0", in_ten)) or 0) <= 10
    in_ten_ms = str(int(time.time() * 1000) + 10_000)
    assert 8 < (throttled_for(DailyMessageLimitExceededError("5", "0", in_ten_ms)) or 0) <= 10
    assert throttled_for(RateLimitExceededError(None, None, None)) == 0.0
    assert throttled_for(QStashError("Request failed with status: 429, body: slow")) == 0.0
    assert throttled_for(QStashError("Request failed with status: 400, body: bad")) is None
    assert qstash_transient(RateLimitExceededError("1", "0", in_ten))
    assert not qstash_transient(QStashError("Request failed with status: 400, body: bad"))
