"""Throwaway PostgreSQL databases on the local server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import os
import uuid

import asyncpg

ADMIN_DSN = os.environ.get("IVR_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def create_database() -> str:
    """Create an empty database; returns its SQLAlchemy URL."""
    name = f"ivr_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
