"""Alembic environment: runs migrations on the async engine ivr-server uses.

The URL comes from the Alembic config (``ivr-server db upgrade`` sets it) or, when run through
the ``alembic`` command, from the server's settings (IVR_DATABASE_URL or the SQLite default).
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from ivr_server.store.database import create_engine
from ivr_server.store.schema import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from ivr_server.config import load_settings

    return load_settings().effective_database_url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
