"""Servers' heartbeats in the shared store, and the calls of a server that stopped beating.

Every server on one PostgreSQL writes its row of ``servers`` with the database's clock, so that
the servers' own clocks never decide who is dead. A live server reads which peers on its
Asterisk have been silent too long, claims each of their open calls (one UPDATE: of several
live servers exactly one wins a call) and sends it on (telephony/rescue.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, desc, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.store.schema import call_events, calls, servers


@dataclass(frozen=True)
class OpenCall:
    id: str
    channel_id: str
    flow: str
    server_id: str


def _now(engine: AsyncEngine) -> Any:
    """The database's clock (PostgreSQL's, as the statement runs); SQLite serves one server."""
    return func.clock_timestamp() if engine.dialect.name == "postgresql" else datetime.now(UTC)


async def beat(engine: AsyncEngine, server_id: str, asterisk: str) -> None:
    """This server is alive now (its row written, or created with ``started_at``)."""
    now = _now(engine)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(servers).values(id=server_id, asterisk=asterisk, started_at=now, seen_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[servers.c.id], set_={"seen_at": now, "asterisk": asterisk}
    )
    async with engine.begin() as conn:
        await conn.execute(stmt)


async def forget(engine: AsyncEngine, server_id: str) -> None:
    """This server stopped cleanly: nobody is to take its calls for a dead server's."""
    async with engine.begin() as conn:
        await conn.execute(delete(servers).where(servers.c.id == server_id))


async def silent_peers(engine: AsyncEngine, me: str, asterisk: str, after_s: float) -> list[str]:
    """Servers on ``asterisk`` other than ``me`` not seen for ``after_s`` seconds."""
    limit = _now(engine) - timedelta(seconds=after_s)
    stmt = select(servers.c.id).where(
        servers.c.id != me, servers.c.asterisk == asterisk, servers.c.seen_at < limit
    )
    async with engine.connect() as conn:
        return [str(r[0]) for r in await conn.execute(stmt)]


async def open_calls(engine: AsyncEngine, server_ids: list[str]) -> list[OpenCall]:
    """The calls of those servers that never ended, oldest first."""
    if not server_ids:
        return []
    c = calls.c
    stmt = (
        select(c.id, c.channel_id, c.flow, c.server_id)
        .where(c.server_id.in_(server_ids), c.ended_at.is_(None))
        .order_by(c.started_at)
    )
    async with engine.connect() as conn:
        return [OpenCall(*map(str, r)) for r in await conn.execute(stmt)]


async def claim(engine: AsyncEngine, call_id: str, reason: str) -> bool:
    """End the call's record with ``reason`` if it is still open: True for the one server whose
    UPDATE did it (the others, and a call that ended meanwhile, get False)."""
    stmt = (
        update(calls)
        .where(and_(calls.c.id == call_id, calls.c.ended_at.is_(None)))
        .values(ended_at=datetime.now(UTC), end_reason=reason)
    )
    async with engine.begin() as conn:
        return (await conn.execute(stmt)).rowcount == 1


async def last_intent(engine: AsyncEngine, call_id: str) -> str | None:
    """The intent the call's last decision named: what the caller was about."""
    e = call_events.c
    stmt = select(e.payload).where(e.call_id == call_id, e.type == "decision").order_by(desc(e.seq)).limit(20)
    async with engine.connect() as conn:
        for (payload,) in await conn.execute(stmt):
            if isinstance(payload, dict) and payload.get("intent"):
                return str(payload["intent"])
    return None
