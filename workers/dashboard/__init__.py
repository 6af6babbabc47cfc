"""The operator dashboard: see, audit and replay jobs in a browser, live.

``make_dashboard(settings)`` builds it as an aiohttp sub-application; the host mounts it
at ``/`` with ``mount``, and ``jobtrail dashboard`` runs it alone.  The names load on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.dashboard.app import make_dashboard, mount

__all__ = ["make_dashboard", "mount"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("workers.dashboard.app"), name)
    raise AttributeError(f"module 'workers.dashboard' has no attribute {name!r}")
