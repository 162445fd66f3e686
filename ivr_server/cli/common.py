"""What every command group shares: exit codes, the help epilog, the store opened for one
command, tables on the terminal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum
from typing import Any

from ivr_server.config import Settings


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    CONFIG = 3
    DATABASE = 4
    NOT_FOUND = 5
    BAD_INPUT = 6


EPILOG = """exit codes: 0 ok, 1 failure, 2 usage, 3 invalid configuration, 4 database unreachable
or not migrated, 5 not found, 6 unusable input (audio, grammar, engine). Settings come from
IVR_* environment variables and --config FILE (TOML); see `ivr-server config show`."""


@asynccontextmanager
async def opened_store(settings: Settings, require_schema: bool = True) -> AsyncIterator[Any]:
    """The store's engine, its schema checked to be current (StoreError: exit 4) unless the
    command manages the schema itself, disposed of when the command is done with it."""
    from ivr_server.store.database import create_engine, require_current_schema

    engine = create_engine(settings.effective_database_url)
    try:
        if require_schema:
            await require_current_schema(engine)
        yield engine
    finally:
        await engine.dispose()


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        print("  ".join(cells).rstrip())
