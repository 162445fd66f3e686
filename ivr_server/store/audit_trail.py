"""Reading the audit trail back: the chain in seq order, page by page, and recent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.audit.chain import StoredRow, Verdict, Walker
from ivr_server.dialog.replay import StoredDecision
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


async def last_decisions(
    engine: AsyncEngine, flow: str, calls: int
) -> tuple[list[str], list[StoredDecision]]:
    """The ids of the last ``calls`` calls of ``flow`` that made decisions, and those decisions
    (from the audit trail, in order)."""
    t = audit_events.c
    recent_calls = (
        select(t.call_id)
        .where(t.kind == "decision", t.call_id.is_not(None), t.body.contains(f'"flow":{json.dumps(flow)}'))
        .group_by(t.call_id)
        .order_by(func.max(t.seq).desc())
        .limit(calls)
    )
    try:
        async with engine.connect() as conn:
            ids = [row[0] for row in (await conn.execute(recent_calls)).all()]
            rows = (
                await conn.execute(
                    select(t.call_id, t.body).where(t.kind == "decision", t.call_id.in_(ids)).order_by(t.seq)
                )
            ).all()
    except (SQLAlchemyError, OSError) as err:
        raise StoreError(f"reading the audit trail failed: {err}") from err
    decisions = []
    for call_id, body in rows:
        p = json.loads(body)["payload"]
        if p.get("flow") != flow:
            continue
        said, keyed = (p.get("inputs") or {}).get("said", ""), (p.get("inputs") or {}).get("keyed", "")
        decisions.append(
            StoredDecision(call_id, p.get("state", ""), said, keyed, p.get("action", ""), p.get("intent"))
        )
    return ids, decisions
