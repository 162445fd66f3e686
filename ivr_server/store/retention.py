"""Retention: what is past its window is deleted or anonymized, in one transaction with the audit
event that says what was removed (counts and cut-off times, never content).

Windows (days; 0 keeps forever), per kind of data:
- ``transcripts``: the words of turns, keys in call events, handoff summaries and context,
  emptied (rows and timings stay, so statistics still add up);
- ``caller_ids``: the caller's number and name on call records, set to NULL;
- ``calls``: call records with everything attached (events, turns, handoffs), deleted;
- ``saved_tasks`` (hours; 0: the flows' own ``keep_hours`` only): returning callers' saved
  tasks, deleted; each is also deleted once past the ``keep_hours`` of the flow that saved it.
The audit trail itself is not touched: it is append-only and holds only redacted inputs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from ivr_server.errors import StoreError
from ivr_server.store.audit_append import AuditEvent, append_audit
from ivr_server.store.schema import call_events, calls, handoffs, saved_tasks, turns

INPUT_EVENTS = ("dtmf", "dtmf_collected")  # call events that carry what the caller keyed
EXPIRED = {"expired": True}


@dataclass(frozen=True)
class RetentionPolicy:
    transcripts_days: int = 30
    caller_ids_days: int = 90
    calls_days: int = 365
    saved_tasks_hours: int = 72


@dataclass
class RetentionReport:
    at: datetime
    cutoffs: dict[str, str | None]
    removed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "cutoffs": self.cutoffs, "removed": self.removed}


def _cutoff(now: datetime, days: int) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


async def apply_retention(
    engine: AsyncEngine,
    policy: RetentionPolicy,
    now: datetime,
    audit_key: bytes | None,
    *,
    dry_run: bool = False,
) -> RetentionReport:
    text_cut = _cutoff(now, policy.transcripts_days)
    ids_cut = _cutoff(now, policy.caller_ids_days)
    calls_cut = _cutoff(now, policy.calls_days)
    tasks_cut = now - timedelta(hours=policy.saved_tasks_hours) if policy.saved_tasks_hours > 0 else None
    report = RetentionReport(
        now, {k: None if v is None else v.isoformat() for k, v in
              (("transcripts", text_cut), ("caller_ids", ids_cut), ("calls", calls_cut),
               ("saved_tasks", tasks_cut))},
    )  # fmt: skip
    removed = report.removed
    try:
        async with engine.begin() as conn:

            async def rows(statement: Executable) -> int:
                return int((await conn.execute(statement)).rowcount)

            if calls_cut is not None:
                old = select(calls.c.id).where(calls.c.started_at < calls_cut).scalar_subquery()
                for table, name in ((call_events, "call_events"), (turns, "turns"), (handoffs, "handoffs")):
                    removed[f"{name}_deleted"] = await rows(delete(table).where(table.c.call_id.in_(old)))
                removed["calls_deleted"] = await rows(delete(calls).where(calls.c.started_at < calls_cut))
            if text_cut is not None:
                removed["turns_emptied"] = await rows(
                    update(turns)
                    .where(turns.c.at < text_cut, turns.c.text != "")
                    .values(text="", detail=EXPIRED)
                )
                keyed = call_events.c.type.in_(INPUT_EVENTS)  # "dtmf" becomes "dtmf:expired": once only
                removed["key_events_emptied"] = await rows(
                    update(call_events)
                    .where(keyed, call_events.c.at < text_cut)
                    .values(payload=EXPIRED, type=call_events.c.type + ":expired")
                )
                removed["handoffs_emptied"] = await rows(
                    update(handoffs)
                    .where(handoffs.c.at < text_cut, handoffs.c.summary != "")
                    .values(summary="", context=EXPIRED)
                )
            if ids_cut is not None:
                named = calls.c.caller_number.is_not(None) | calls.c.caller_name.is_not(None)
                removed["caller_ids_cleared"] = await rows(
                    update(calls)
                    .where(calls.c.started_at < ids_cut, named)
                    .values(caller_number=None, caller_name=None)
                )
            expired = saved_tasks.c.expires_at < now
            if tasks_cut is not None:
                expired |= saved_tasks.c.saved_at < tasks_cut
            removed["saved_tasks_deleted"] = await rows(delete(saved_tasks).where(expired))
            if dry_run:
                await conn.rollback()
                return report
            event = AuditEvent("retention", now, report.as_dict(), None, str(uuid.uuid4()))
            await append_audit(conn, [event], audit_key)
    except (SQLAlchemyError, OSError) as err:
        raise StoreError(f"retention failed, nothing was removed: {err}") from err
    return report
