"""workers: the aiohttp host that runs job handlers, the sweeper, and the CLI.

The names below are loaded on first use, so ``jobtrail`` commands that never start a host
do not pay for importing it (aiohttp's server, the handlers, stripe…).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.app import HostOptions, make_app
    from workers.context import HOST, HostContext
    from workers.sweeper import Sweeper, SweeperConfig
    from workers.worker import create_job_worker

_WHERE = {
    "HOST": "workers.context",
    "HostContext": "workers.context",
    "HostOptions": "workers.app",
    "Sweeper": "workers.sweeper",
    "SweeperConfig": "workers.sweeper",
    "create_job_worker": "workers.worker",
    "make_app": "workers.app",
}

__all__ = [
    "HOST",
    "HostContext",
    "HostOptions",
    "Sweeper",
    "SweeperConfig",
    "create_job_worker",
    "make_app",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
