"""A handler asks for the host explicitly, as a third parameter; the seed's two still work."""

from __future__ import annotations

from typing import Any

from workers.attempt import takes_host


async def seed_style(payload: Any, job: Any) -> None:
    """The seed's handler shape: (payload, job)."""


async def with_host(payload: Any, job: Any, host: Any) -> None:
    """A handler that reads the log or the views: (payload, job, host)."""


class CallableHandler:
    async def __call__(self, payload: Any, job: Any, host: Any) -> None:
        """A callable object asking for the host."""


def test_only_handlers_with_a_third_parameter_get_the_host() -> None:
    assert not takes_host(seed_style)
    assert takes_host(with_host)
    assert takes_host(CallableHandler())
    assert not takes_host(lambda payload, job: None)
