"""Appending to the audit trail inside a caller's transaction: the events get the next places in
the chain, after whatever is committed, so the chain follows commit order whichever process
writes (PostgreSQL: an advisory lock; SQLite: its single writer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr_server.audit import chain
from ivr_server.store.schema import SIZES, audit_events

AUDIT_LOCK = 0x1A0D17  # PostgreSQL advisory lock key: one transaction extends the chain at a time


@dataclass(frozen=True)
class AuditEvent:
    kind: str
    at: datetime
    payload: dict[str, Any]
    call_id: str | None = None
    event_id: str = ""  # given at submit when empty; a replay keeps it, so nothing is chained twice


async def append_audit(conn: AsyncConnection, ops: list[AuditEvent], key: bytes | None) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})
    t = audit_events.c
    ids = [o.event_id for o in ops]
    # Written by a commit whose outcome was lost: not again.
    present = set((await conn.execute(select(t.event_id).where(t.event_id.in_(ids)))).scalars())
    last = (await conn.execute(select(t.seq, t.hash).order_by(t.seq.desc()).limit(1))).first()
    seq, prev = (last[0], last[1]) if last else (0, chain.GENESIS)
    rows = []
    for o in ops:
        if o.event_id in present:
            continue
        present.add(o.event_id)
        seq += 1
        kind = o.kind[: SIZES["type"]]
        body = chain.body(seq, o.event_id, o.at, kind, o.call_id, o.payload)
        digest = chain.link(prev, body, key)
        rows.append({"seq": seq, "event_id": o.event_id, "at": o.at, "kind": kind, "call_id": o.call_id,
                     "body": body, "prev_hash": prev, "hash": digest})  # fmt: skip
        prev = digest
    if rows:
        await conn.execute(audit_events.insert(), rows)
