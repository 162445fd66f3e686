"""Reading the audit trail back: the chain in seq order, page by page, and recent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.audit.chain import StoredRow, Verdict, Walker
from ivr_server.errors import StoreError
from ivr_server.store.schema import audit_events

PAGE = 5000  # rows per query: memory stays flat however long the trail


async def chain_rows(engine: AsyncEngine) -> AsyncIterator[StoredRow]:
    last = None
    t = audit_events.c
    while True:
        query = select(t.seq, t.event_id, t.at, t.kind, t.call_id, t.body, t.prev_hash, t.hash)
        if last is not None:
            query = query.where(t.seq > last)
        try:
            async with engine.connect() as conn:
                page = (await conn.execute(query.order_by(t.seq).limit(PAGE))).all()
        except (SQLAlchemyError, OSError) as err:
            raise StoreError(f"reading the audit trail failed: {err}") from err
        for row in page:
            yield StoredRow(*row)
        if len(page) < PAGE:
            return
        last = page[-1][0]


async def verify_store(engine: AsyncEngine, key: bytes | None) -> Verdict:
    walker = Walker(key)
    async for row in chain_rows(engine):
        if not walker.step(row):
            break
    return walker.verdict()


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: str
    kind: str
    call_id: str | None
    payload: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "call_id": self.call_id,
            "payload": self.payload,
        }


async def recent(
    engine: AsyncEngine, limit: int, call_id: str | None = None, kind: str | None = None
) -> list[AuditRecord]:
    t = audit_events.c
    query = select(t.seq, t.body).order_by(t.seq.desc()).limit(limit)
    if call_id:
        query = query.where(t.call_id == call_id)
    if kind:
        query = query.where(t.kind == kind)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    except (SQLAlchemyError, OSError) as err:
        raise StoreError(f"reading the audit trail failed: {err}") from err
    out = []
    for seq, body in reversed(rows):
        try:
            content = json.loads(body)
            out.append(
                AuditRecord(seq, content["at"], content["kind"], content["call_id"], content["payload"])
            )
        except (ValueError, KeyError, TypeError):  # an edited row: `audit verify` says which
            out.append(AuditRecord(seq, "?", "?", None, {"unreadable_body": body[:200]}))
    return out
