"""What a running host shares between its routes and background tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from qstash import AsyncQStash

from jobstore import Dispatcher, EventStore, JobRegistry, QStashLimits, Settings
from workers.metrics import Metrics
from workers.supervisor import Supervisor
from workers.verification import Verifier


@dataclass
class HostContext:
    """The host's collaborators: settings, the log, the registry, verification, metrics."""

    settings: Settings
    store: EventStore
    dsn: str
    dispatcher: Dispatcher
    registry: JobRegistry
    verifier: Verifier
    metrics: Metrics
    http: aiohttp.ClientSession | None = None
    qstash: AsyncQStash | None = None
    accepting: bool = True
    supervisor: Supervisor | None = None
    """The background tasks and their states (None until the host has started them)."""
    qstash_limits: QStashLimits = field(default_factory=QStashLimits)
    """How often QStash throttled the relay's calls, and until when it waits now."""


HOST = web.AppKey("jobtrail_host", HostContext)
