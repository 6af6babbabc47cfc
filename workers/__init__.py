"""workers: the aiohttp host that runs job handlers, the sweeper, and the CLI."""

from workers.app import HostOptions, make_app
from workers.context import HOST, HostContext
from workers.sweeper import Sweeper, SweeperConfig
from workers.worker import create_job_worker

__all__ = [
    "HOST",
    "HostContext",
    "HostOptions",
    "Sweeper",
    "SweeperConfig",
    "create_job_worker",
    "make_app",
]
