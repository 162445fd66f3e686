"""Per flow version: how calls went. A call's version is the one it ran (its ``flow_ended``,
``deployment`` or first ``decision`` event); its outcome comes from ``flow_ended`` (a caller who
hung up before the flow ended is ``abandoned``); its repairs (a repeat, a correction, ...) from
its ``repair`` events."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.errors import StoreError
from ivr_server.store.schema import call_events, calls, flow_deployments, turns

ERROR_ENDS = ("flow_error", "setup_failed")


@dataclass
class VersionStats:
    flow: str
    version: str  # content hash
    version_number: int | None = None  # None: served from a flow file
    calls: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # transfer, hangup, ended, loop, abandoned
    errors: int = 0  # flow errors, set-up failures, loops
    tool_failures: int = 0
    caller_turns: int = 0
    repairs: Counter[str] = field(default_factory=Counter)  # repeat, correction, digression, ...

    def as_dict(self) -> dict[str, Any]:
        n = max(1, self.calls)
        return {
            "flow": self.flow, "version": self.version, "version_number": self.version_number,
            "calls": self.calls,
            "containment": round(1 - self.outcomes["transfer"] / n, 4),
            "transfer_rate": round(self.outcomes["transfer"] / n, 4),
            "abandoned": self.outcomes["abandoned"], "avg_turns": round(self.caller_turns / n, 2),
            "errors": self.errors, "tool_failures": self.tool_failures, "outcomes": dict(self.outcomes),
            "repairs": dict(sorted(self.repairs.items())),
        }  # fmt: skip


async def flow_stats(
    engine: AsyncEngine, flow: str | None = None, since: datetime | None = None
) -> list[VersionStats]:
    e = call_events.c
    kinds = ("flow_ended", "deployment", "decision", "repair")
    query = select(e.call_id, e.type, e.payload).where(e.type.in_(kinds)).order_by(e.call_id, e.seq)
    ends = select(calls.c.id, calls.c.end_reason)
    spoken = select(turns.c.call_id, func.count()).where(turns.c.role == "caller").group_by(turns.c.call_id)
    if since is not None:
        query = query.join(calls, calls.c.id == e.call_id).where(calls.c.started_at >= since)
        ends = ends.where(calls.c.started_at >= since)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            end_reason: dict[str, str | None] = dict((await conn.execute(ends)).all())
            turn_count: dict[str, int] = dict((await conn.execute(spoken)).all())
            deployed = select(flow_deployments.c.content_hash, flow_deployments.c.version_number)
            numbers: dict[str, int] = dict((await conn.execute(deployed)).all())
    except (SQLAlchemyError, OSError) as err:
        raise StoreError(f"reading call records failed: {err}") from err
    per_call: dict[str, dict[str, Any]] = defaultdict(lambda: {"decisions": 0, "repairs": Counter()})
    for call_id, kind, payload in rows:
        c = per_call[call_id]
        if kind == "repair":
            c["repairs"][str(payload.get("repair"))] += 1
        elif kind == "decision":
            c["decisions"] += 1
            c.setdefault("version", payload.get("flow_version"))
        elif kind == "deployment":
            c["version"], c["flow"] = payload.get("content_hash"), payload.get("flow")
            c["number"] = payload.get("version_number")
        else:
            c["ended"] = payload
            c["version"], c["flow"] = payload.get("flow_version"), payload.get("flow")
    table: dict[tuple[str, str], VersionStats] = {}
    for call_id, c in per_call.items():
        ended = c.get("ended") or {}
        name = c.get("flow") or ended.get("flow")
        if not name or not c.get("version") or (flow and name != flow):
            continue
        key = (name, c["version"])
        s = table.setdefault(
            key, VersionStats(name, c["version"], c.get("number") or numbers.get(c["version"]))
        )
        s.calls += 1
        outcome = ended.get("outcome", "abandoned")
        s.outcomes[outcome] += 1
        s.errors += end_reason.get(call_id) in ERROR_ENDS or outcome == "loop"
        s.tool_failures += sum(1 for _, result in ended.get("tools", []) if result != "ok")
        s.caller_turns += turn_count.get(call_id) or c["decisions"]  # keypad-only calls: their decisions
        s.repairs.update(c["repairs"])
    return sorted(table.values(), key=lambda s: (s.flow, s.version_number or 0, s.version))
