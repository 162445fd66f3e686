"""Engines, the schema-version check and migrations (Alembic, scripts in migrations/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ivr_server.config import mask_url
from ivr_server.errors import ConfigError, SchemaNotCurrent, StoreError
from ivr_server.resources import resource_dir


def migrations_dir() -> Path:
    return resource_dir("migrations")


def create_engine(url: str) -> AsyncEngine:
    """An async engine; for SQLite the data directory is created and WAL turned on."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError(f"IVR_DATABASE_URL is not a database URL: {mask_url(url)}") from err
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"IVR_DATABASE_URL: unsupported database {backend!r} (sqlite or postgresql)")
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["connect_args"] = {"timeout": 10, "command_timeout": 30}
    try:
        engine = create_async_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as err:
        raise ConfigError(f"IVR_DATABASE_URL {mask_url(url)}: {err}") from err
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/ has no revisions"
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
            )
    except (SQLAlchemyError, OSError) as err:
        raise StoreError(f"cannot reach the database {_where(engine)}: {err}") from err


async def require_current_schema(engine: AsyncEngine) -> None:
    """Refuse to run against a database the migrations have not brought up to date."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotCurrent(
            f"database {_where(engine)} is at schema revision {current or 'none (empty)'}, the code needs "
            f"{head}; run: ivr-server db upgrade"
        )


def _where(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=True)


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Run the migrations (blocking; runs its own event loop inside Alembic's env.py)."""
    create_engine(url)  # validates the URL and makes SQLite's directory
    try:
        command.upgrade(alembic_config(url), revision)
    except (SQLAlchemyError, OSError) as err:
        raise StoreError(f"migrating {mask_url(url)} failed: {err}") from err
