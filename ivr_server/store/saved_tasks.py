"""Returning callers' saved tasks in the store (table ``saved_tasks``): read once at a call's
start, within a short timeout; written through the StoreWriter like every other write, so a
call never waits for one.

A write is one op, ``TaskSaved``: the task kept for (caller, flow), or, without a ``state``, the
caller's row in the flow removed. Applied in order as delete-then-insert, the last one wins on
SQLite and PostgreSQL alike, and replaying one from the outbox changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr_server.dialog.returning import SavedTask
from ivr_server.errors import StoreError
from ivr_server.store.schema import saved_tasks

_COPIED = ("caller", "flow", "flow_version", "state", "intent", "slots", "expires_at")


@dataclass(frozen=True)
class TaskSaved:
    caller: str  # the caller's number as a keyed hash (privacy/caller_id.py)
    flow: str
    at: datetime
    state: str | None = None  # None: remove the caller's saved task in the flow
    flow_version: str = ""
    intent: str = ""
    slots: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None


async def write_saved_tasks(conn: AsyncConnection, ops: Sequence[TaskSaved]) -> None:
    for o in ops:
        where = (saved_tasks.c.caller == o.caller) & (saved_tasks.c.flow == o.flow)
        await conn.execute(delete(saved_tasks).where(where))
        if o.state is not None:
            row = {column: getattr(o, column) for column in _COPIED} | {"saved_at": o.at}
            await conn.execute(insert(saved_tasks).values(row))


class StoredTasks:
    """The server's TaskMemory (dialog/returning.py): reads here, writes through ``submit``."""

    def __init__(
        self, engine: AsyncEngine, submit: Callable[[TaskSaved], None], lookup_timeout_s: float
    ) -> None:
        self.engine, self.submit, self.lookup_timeout_s = engine, submit, lookup_timeout_s

    async def find(self, caller: str, flow: str) -> SavedTask | None:
        query = select(saved_tasks).where(saved_tasks.c.caller == caller, saved_tasks.c.flow == flow)
        try:
            async with asyncio.timeout(self.lookup_timeout_s), self.engine.connect() as conn:
                row = (await conn.execute(query)).mappings().first()
        except (SQLAlchemyError, OSError, TimeoutError) as err:
            why = str(err) or type(err).__name__
            raise StoreError(f"saved task lookup failed (timeout {self.lookup_timeout_s}s): {why}") from err
        if row is None:
            return None
        at: datetime = row["saved_at"]  # SQLite gives it back naive: it was written in UTC
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return SavedTask(
            row["flow"], row["flow_version"], row["state"], row["intent"], dict(row["slots"]), at
        )

    def keep(self, caller: str, task: SavedTask, expires_at: datetime) -> None:
        self.submit(TaskSaved(caller, task.flow, task.saved_at, task.state, task.flow_version, task.intent,
                              dict(task.slots), expires_at))  # fmt: skip

    def forget(self, caller: str, flow: str) -> None:
        self.submit(TaskSaved(caller, flow, datetime.now(UTC)))
