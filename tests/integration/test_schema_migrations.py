"""The migrations build exactly the tables ivr_server/store/schema.py describes, on both back
ends: a column or index added to one and not the other is caught here, not in production."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ivr_server.store.database import create_engine, upgrade
from ivr_server.store.schema import metadata
from tests.conftest import fresh_database


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_the_migrated_database_is_the_schema(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                diff = await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), metadata)
                )
        finally:
            await engine.dispose()
    assert diff == []
