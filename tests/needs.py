"""What some tests need from the machine (a browser, haproxy, promtool, node, namespaces).

Elsewhere a test whose tool is missing is skipped with the reason printed; under CI, where
``.ci/run`` installs every one of them, a missing tool is a failure, never a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """Skip (fail under CI) the test: ``what`` it needs is not on this machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: under CI this test must run (.ci/run installs what it needs)")
    print(f"skipped: {what}")
    pytest.skip(what)
