"""Reading calls, their events and turns back (CLI, reconciliation, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.store.schema import call_events, calls, turns


@dataclass(frozen=True)
class CallRecord:
    id: str
    channel_id: str
    caller_number: str | None
    caller_name: str | None
    dialed_number: str | None
    flow: str
    flow_args: list[str]
    server_id: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    event_count: int = 0

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("started_at", "answered_at", "ended_at"):
            out[k] = out[k].isoformat() if out[k] else None
        out["duration_s"] = self.duration_s
        return out


@dataclass(frozen=True)
class EventRecord:
    seq: int
    at: datetime
    type: str
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at.isoformat(), "type": self.type, "payload": self.payload}


@dataclass(frozen=True)
class TurnRecord:
    seq: int
    role: str
    at: datetime
    text: str
    outcome: str
    confidence: float | None
    engine: str | None
    model: str | None
    start_ms: int | None
    end_ms: int | None
    latency_ms: int | None
    cached: bool | None
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["at"] = self.at.isoformat()
        return out


class CallNotFound(LookupError):
    pass


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything the server writes is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _call(row: Any, event_count: int = 0) -> CallRecord:
    m = row._mapping
    return CallRecord(
        id=m["id"],
        channel_id=m["channel_id"],
        caller_number=m["caller_number"],
        caller_name=m["caller_name"],
        dialed_number=m["dialed_number"],
        flow=m["flow"],
        flow_args=list(m["flow_args"] or []),
        server_id=m["server_id"],
        started_at=_utc(m["started_at"]),  # type: ignore[arg-type]
        answered_at=_utc(m["answered_at"]),
        ended_at=_utc(m["ended_at"]),
        end_reason=m["end_reason"],
        event_count=event_count,
    )


async def list_calls(engine: AsyncEngine, limit: int = 20) -> list[CallRecord]:
    counts = select(call_events.c.call_id, func.count().label("n")).group_by(call_events.c.call_id).subquery()
    stmt = (
        select(calls, func.coalesce(counts.c.n, 0).label("event_count"))
        .outerjoin(counts, counts.c.call_id == calls.c.id)
        .order_by(calls.c.started_at.desc(), calls.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [_call(r, r._mapping["event_count"]) for r in rows]


async def find_call(engine: AsyncEngine, id_or_prefix: str) -> CallRecord:
    """A call by its id or a unique prefix of it (like git's short hashes)."""
    if not id_or_prefix:
        raise CallNotFound("empty call id")
    pattern = id_or_prefix.replace("\\", "").replace("%", "").replace("_", "") + "%"
    async with engine.connect() as conn:
        rows = (await conn.execute(select(calls).where(calls.c.id.like(pattern)).limit(2))).all()
    if not rows:
        raise CallNotFound(f"no call with id {id_or_prefix!r}")
    if len(rows) > 1:
        raise CallNotFound(f"call id prefix {id_or_prefix!r} is ambiguous; give more characters")
    return _call(rows[0])


async def call_events_of(engine: AsyncEngine, call_id: str) -> list[EventRecord]:
    stmt = select(call_events).where(call_events.c.call_id == call_id).order_by(call_events.c.seq)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [
        EventRecord(r.seq, _utc(r.at), r.type, dict(r.payload or {}))  # type: ignore[arg-type]
        for r in rows
    ]


async def open_call_ids(engine: AsyncEngine, server_id: str) -> list[str]:
    """Calls this server started that the store still shows as in progress."""
    stmt = select(calls.c.id).where(calls.c.server_id == server_id, calls.c.ended_at.is_(None))
    async with engine.connect() as conn:
        return [r[0] for r in (await conn.execute(stmt)).all()]


async def turns_of(engine: AsyncEngine, call_id: str) -> list[TurnRecord]:
    stmt = select(turns).where(turns.c.call_id == call_id).order_by(turns.c.seq)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    fields = TurnRecord.__dataclass_fields__
    return [
        TurnRecord(**{k: r._mapping[k] for k in fields if k != "at"}, at=_utc(r._mapping["at"]))  # type: ignore[arg-type]
        for r in rows
    ]
