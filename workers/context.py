"""What a running host shares between its routes and background tasks."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web
from qstash import AsyncQStash

from jobstore import Dispatcher, EventStore, JobRegistry, Settings
from workers.metrics import Metrics
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


HOST = web.AppKey("jobtrail_host", HostContext)
