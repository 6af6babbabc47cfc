"""Shared fixtures: a real PostgreSQL (DATABASE_URL, else an embedded server)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

import jobstore
from tests import pg


@pytest.fixture(scope="session")
def server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server: DATABASE_URL when set, else an embedded one for the session."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    server = jobstore.EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "pgdata")
    dsn = server.start()
    try:
        yield dsn
    finally:
        server.stop()


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
