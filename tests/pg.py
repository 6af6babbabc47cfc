"""Test databases: one PostgreSQL server, a migrated template, a fresh clone per test."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import asyncpg

import jobstore


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` (works for host and socket URLs)."""
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()


def unique_name(prefix: str) -> str:
    """A database name nobody else uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create_template(server_dsn: str) -> str:
    """Create a migrated template database and return its name."""
    name = unique_name("jobtrail_tpl")
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await jobstore.migrate(with_database(server_dsn, name))
    return name


async def clone(server_dsn: str, template: str) -> str:
    """Create a database from ``template`` and return its name."""
    name = unique_name("jobtrail_t")
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    return name


async def drop(server_dsn: str, name: str) -> None:
    """Drop database ``name``, disconnecting anyone still in it."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
