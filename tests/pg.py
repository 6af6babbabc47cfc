"""Test databases: one PostgreSQL server, a migrated template, a fresh clone per test.

The rules live in jobtrail's pytest plugin (workers/testing.py); these are its names here.
"""

from __future__ import annotations

import uuid

from workers.testing import clone_database as clone
from workers.testing import create_template, drop_database
from workers.testing import database_url as with_database


def unique_name(prefix: str) -> str:
    """A database name nobody else uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def drop(server_dsn: str, name: str) -> None:
    """Drop database ``name``, disconnecting anyone still in it."""
    await drop_database(server_dsn, name)


__all__ = ["clone", "create_template", "drop", "unique_name", "with_database"]
