"""Test databases: one PostgreSQL server, a migrated template, a fresh clone per test.

The rules live in jobtrail's pytest plugin (workers/testing.py); these are its names here.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import jobstore
from jobstore import migrations
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


async def until_readable(store: jobstore.EventStore) -> None:
    """Until no running transaction (another test's, on the shared server) holds the log's
    readers back (a test that needs the horizon clear waits for it)."""
    for _ in range(2000):
        if not (await store.read_after(await store.head(), 1)).held_back:
            return
        await asyncio.sleep(0.005)


def migrations_before(tmp_path: Path, version: int) -> Path:
    """A folder holding the migrations numbered below ``version``: a database migrated with
    it is one that the later migrations will find, to test how they treat its data."""
    folder = tmp_path / "sql"
    folder.mkdir()
    for migration in migrations.discover():
        if migration.version < version:
            source = migrations.migrations_dir() / f"{migration.version:04d}_{migration.name}.sql"
            shutil.copy(source, folder)
    return folder
