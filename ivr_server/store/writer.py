"""Ordered, batched writes from calls to the store, off the calls' path.

Calls ``submit()`` operations without waiting; one task commits them in order, in batches. A
database that is down is retried with capped exponential backoff, keeping the operations in
memory meanwhile; inserts ignore rows already present, so a batch whose commit outcome was
unknown can be sent again without duplicates. A row the database rejects outright (too long,
constraint) is logged with its content and dropped so it cannot block the calls behind it.

Everything submitted passes the one redaction step (ivr_server/privacy) first; what it masks is
itself an audit event. Audit events are chained here, inside the transaction that writes them,
so the chain follows commit order whichever process writes.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ivr_server.observability.logging import RateLimitedLog
from ivr_server.observability.metrics import Metrics
from ivr_server.privacy.redact import Redactor
from ivr_server.store.audit_append import AuditEvent, append_audit
from ivr_server.store.outbox import Outbox
from ivr_server.store.saved_tasks import TaskSaved, write_saved_tasks
from ivr_server.store.schema import SIZES, call_events, calls, handoffs, turns

log = structlog.get_logger(__name__)

RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 5.0


def _clip(value: str | None, column: str) -> str | None:
    return None if value is None else value[: SIZES[column]]


@dataclass(frozen=True)
class CallStarted:
    call_id: str
    channel_id: str
    caller_number: str | None
    caller_name: str | None
    dialed_number: str | None
    flow: str
    flow_args: list[str]
    server_id: str
    started_at: datetime


@dataclass(frozen=True)
class CallAnswered:
    call_id: str
    answered_at: datetime


@dataclass(frozen=True)
class CallEvent:
    call_id: str
    seq: int
    at: datetime
    type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    ended_at: datetime
    end_reason: str


@dataclass(frozen=True)
class Turn:
    call_id: str
    seq: int
    role: str  # caller | system
    at: datetime
    text: str
    outcome: str  # caller: silence, max_length, no_input, barge_in, failed; system: completed, interrupted
    confidence: float | None = None
    engine: str | None = None
    model: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    latency_ms: int | None = None
    cached: bool | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Handoff:
    id: str
    call_id: str
    at: datetime
    target: str
    flow: str | None
    intent: str | None
    summary: str
    context: dict[str, str]
    webhook_status: str


@dataclass(frozen=True)
class HandoffDelivery:
    handoff_id: str
    status: str
    attempts: int


Op = (
    CallStarted
    | CallAnswered
    | CallEvent
    | CallEnded
    | Turn
    | Handoff
    | HandoffDelivery
    | AuditEvent
    | TaskSaved
)
OP_KINDS: dict[str, type] = {
    k.__name__: k
    for k in (
        CallStarted, CallAnswered, CallEvent, CallEnded, Turn, Handoff, HandoffDelivery, AuditEvent, TaskSaved
    )
}  # fmt: skip


class StoreWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        metrics: Metrics,
        *,
        batch_max: int = 500,
        audit_key: bytes | None = None,
        redactor: Redactor | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.engine = engine
        self.audit_key = audit_key or None
        self.redactor = redactor or Redactor()
        self.metrics = metrics
        self.batch_max = batch_max
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._pending: deque[Op] = deque()
        self._journal: deque[int] = deque()  # the outbox id of each pending op (0: none)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.outbox = outbox
        if outbox is not None:
            left = outbox.load()
            if left:
                log.warning("store.outbox_replay", ops=len(left), file=str(outbox.path))
            for op_id, op in left:
                self._queue(op, op_id)
        self._log_limit = RateLimitedLog()
        self.written = 0
        self.rejected = 0
        self.tap: Callable[[Op], None] | None = None  # sees each op as stored, redacted (the console)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def lost_on_exit(self) -> bool:
        """Whether some pending write is in memory only (the outbox replays the rest next start)."""
        return any(op_id == 0 for op_id in self._journal)

    def submit(self, op: Op) -> None:
        found: Counter[str] = Counter()
        op = self._redacted(op, found)
        if self.tap is not None:
            self.tap(op)
        self._queue(op)
        if found:
            where = type(op).__name__ if not isinstance(op, AuditEvent) else f"audit:{op.kind}"
            call_id = getattr(op, "call_id", None)
            self._queue(self._redacted(AuditEvent("redaction", _utcnow(), {"where": where,
                        "masked": dict(sorted(found.items()))}, call_id), Counter()))  # fmt: skip

    def preview(self, op: Op) -> None:
        """Show ``tap`` an op before it is submitted (a caller's turn waits for the reply's
        latency), redacted the same way."""
        if self.tap is not None:
            self.tap(self._redacted(op, Counter()))

    def _queue(self, op: Op, op_id: int | None = None) -> None:
        if op_id is None:
            op_id = self._journaled(op)
        self._pending.append(op)
        self._journal.append(op_id)
        self.metrics.store_pending.set(len(self._pending))
        self._idle.clear()
        self._wake.set()

    def _journaled(self, op: Op) -> int:
        if self.outbox is None:
            return 0
        try:
            return self.outbox.append(op)
        except sqlite3.Error as err:  # a full disk: the write still goes to the database, from memory
            should, count = self._log_limit.should_log("outbox")
            if should:
                log.error("store.outbox_failed", error=str(err)[:200], failures=count)
            return 0

    def _redacted(self, op: Op, found: Counter[str]) -> Op:
        r = self.redactor
        if isinstance(op, AuditEvent):
            return replace(op, payload=r.value(op.payload, found), event_id=op.event_id or str(uuid.uuid4()))
        if isinstance(op, CallEvent):
            return replace(op, payload=r.value(op.payload, found))
        if isinstance(op, Turn):
            return replace(op, text=r.value(op.text, found), detail=r.value(op.detail, found))
        if isinstance(op, Handoff):
            return replace(op, summary=r.value(op.summary, found), context=r.value(op.context, found))
        if isinstance(op, TaskSaved):  # the dialog keeps no slot this would mask: belt and braces
            return replace(op, slots=r.value(op.slots, found))
        return op

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted is committed; False if the time ran out."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(itertools.islice(self._pending, self.batch_max))
                await self._write_with_retry(batch)
                upto = 0
                for _ in batch:
                    self._pending.popleft()
                    upto = max(upto, self._journal.popleft())
                if upto and self.outbox is not None:
                    try:
                        self.outbox.done(upto)
                    except sqlite3.Error as err:  # replayed next start: idempotent, so harmless
                        log.error("store.outbox_failed", error=str(err)[:200])
                self.metrics.store_pending.set(len(self._pending))
            self._idle.set()

    async def _write_with_retry(self, batch: list[Op]) -> None:
        failures = 0
        while True:
            try:
                await self._write(batch)
                self.written += len(batch)
                if failures:
                    log.info("store.recovered", after_failures=failures, pending=len(self._pending))
                return
            except (IntegrityError, DataError) as err:
                if len(batch) == 1:
                    self.rejected += 1
                    log.error(
                        "store.write_rejected",
                        op=type(batch[0]).__name__,
                        content=repr(batch[0])[:500],
                        error=str(err.orig or err)[:300],
                    )
                    return
                for op in batch:  # find the bad one, keep the rest
                    await self._write_with_retry([op])
                return
            except (SQLAlchemyError, OSError, TimeoutError) as err:
                failures += 1
                self.metrics.store_failures.inc()
                wait = min(RETRY_MAX_S, RETRY_INITIAL_S * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
                should, count = self._log_limit.should_log("unavailable")
                if should:
                    log.error(
                        "store.write_failed",
                        error=str(err)[:300],
                        retry_in_s=round(wait, 2),
                        pending=len(self._pending),
                        failures=count,
                    )
                await asyncio.sleep(wait)

    async def _write(self, batch: list[Op]) -> None:
        # One statement per kind of op, not per run of them: a call's events and audit events
        # interleave. The stable sort keeps each kind's order (the audit chain's, a call's seq) and
        # puts rows before what refers to them (calls, then handoffs, then the rest).
        async with self.engine.begin() as conn:
            for kind, group in itertools.groupby(sorted(batch, key=_write_order), key=type):
                await self._write_group(conn, kind, list(group))

    async def _write_group(self, conn: AsyncConnection, kind: type, ops: list[Any]) -> None:
        if kind is AuditEvent:
            await append_audit(conn, ops, self.audit_key)
        elif kind is TaskSaved:
            await write_saved_tasks(conn, ops)
        elif kind is CallEvent:
            rows = [
                {
                    "call_id": o.call_id,
                    "seq": o.seq,
                    "at": o.at,
                    "type": _clip(o.type, "type"),
                    "payload": o.payload,
                }
                for o in ops
            ]
            stmt = self._insert(call_events).on_conflict_do_nothing(index_elements=["call_id", "seq"])
            await conn.execute(stmt, rows)
        elif kind is CallStarted:
            rows = [
                {
                    "id": o.call_id,
                    "channel_id": _clip(o.channel_id, "channel_id"),
                    "caller_number": _clip(o.caller_number, "caller_number"),
                    "caller_name": _clip(o.caller_name, "caller_name"),
                    "dialed_number": _clip(o.dialed_number, "dialed_number"),
                    "flow": _clip(o.flow, "flow"),
                    "flow_args": o.flow_args,
                    "server_id": _clip(o.server_id, "server_id"),
                    "started_at": o.started_at,
                }
                for o in ops
            ]
            await conn.execute(self._insert(calls).on_conflict_do_nothing(index_elements=["id"]), rows)
        elif kind is Turn:
            rows = [
                {
                    "call_id": o.call_id,
                    "seq": o.seq,
                    "role": o.role,
                    "at": o.at,
                    "text": o.text,
                    "confidence": o.confidence,
                    "engine": _clip(o.engine, "engine"),
                    "model": _clip(o.model, "model"),
                    "start_ms": o.start_ms,
                    "end_ms": o.end_ms,
                    "latency_ms": o.latency_ms,
                    "cached": o.cached,
                    "outcome": _clip(o.outcome, "outcome"),
                    "detail": o.detail or {},
                }
                for o in ops
            ]
            await conn.execute(
                self._insert(turns).on_conflict_do_nothing(index_elements=["call_id", "seq"]), rows
            )
        elif kind is CallAnswered:
            for o in ops:
                await conn.execute(
                    update(calls).where(calls.c.id == o.call_id).values(answered_at=o.answered_at)
                )
        elif kind is Handoff:
            rows = [
                {
                    "id": o.id,
                    "call_id": o.call_id,
                    "at": o.at,
                    "target": o.target[:128],
                    "flow": None if o.flow is None else o.flow[:128],
                    "intent": None if o.intent is None else o.intent[:64],
                    "summary": o.summary,
                    "context": o.context,
                    "webhook_status": o.webhook_status[:64],
                    "webhook_attempts": 0,
                }
                for o in ops
            ]
            await conn.execute(self._insert(handoffs).on_conflict_do_nothing(index_elements=["id"]), rows)
        elif kind is HandoffDelivery:
            for o in ops:
                await conn.execute(
                    update(handoffs)
                    .where(handoffs.c.id == o.handoff_id)
                    .values(webhook_status=o.status[:64], webhook_attempts=o.attempts)
                )
        elif kind is CallEnded:
            for o in ops:  # the first end recorded wins
                await conn.execute(
                    update(calls)
                    .where(calls.c.id == o.call_id, calls.c.ended_at.is_(None))
                    .values(ended_at=o.ended_at, end_reason=_clip(o.end_reason, "end_reason"))
                )


_ORDER = {
    k: i
    for i, k in enumerate(
        (
            CallStarted,
            Handoff,
            CallAnswered,
            CallEvent,
            Turn,
            AuditEvent,
            CallEnded,
            HandoffDelivery,
            TaskSaved,
        )
    )
}


def _write_order(op: Op) -> int:
    return _ORDER[type(op)]


def _utcnow() -> datetime:
    return datetime.now(UTC)
