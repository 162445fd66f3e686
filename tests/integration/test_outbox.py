"""The durable outbox: writes survive a database outage and a crash meanwhile, replayed in order
with nothing twice; a journal for another database is set aside, never replayed here."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr_server.errors import ConfigError
from ivr_server.observability.metrics import Metrics
from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.audit_trail import chain_rows, verify_store
from ivr_server.store.database import create_engine
from ivr_server.store.outbox import Outbox
from ivr_server.store.queries import call_events_of, list_calls
from ivr_server.store.writer import OP_KINDS, CallEnded, CallEvent, CallStarted, Op, StoreWriter
from tests.support.pg_cluster import ThrowawayCluster

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def a_call(call_id: str, events: int) -> list[Op]:
    ops: list[Op] = [CallStarted(call_id, f"ch-{call_id}", "+15550100", None, "100", "digits", [], "t", T0)]
    for seq in range(1, events + 1):
        ops.append(CallEvent(call_id, seq, T0 + timedelta(seconds=seq), "dtmf", {"digit": str(seq % 10)}))
        ops.append(AuditEvent("decision", T0 + timedelta(seconds=seq), {"n": seq}, call_id))
    ops += [CallEnded(call_id, T0 + timedelta(minutes=5), "completed")]
    return ops


async def test_a_crash_during_an_outage_loses_nothing(cluster: ThrowawayCluster, tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    engine = create_engine(cluster.url)
    ops = a_call("c1", 20) + a_call("c2", 5)
    try:
        await asyncio.to_thread(cluster.stop)  # the database goes away
        writer = StoreWriter(engine, Metrics(), outbox=Outbox(path, cluster.url, OP_KINDS))
        task = asyncio.create_task(writer.run())
        for op in ops:
            writer.submit(op)
        assert not await writer.flush(1.5) and writer.pending == len(ops)
        task.cancel()  # the process dies: no flush, the memory is gone
        assert writer.outbox is not None
        writer.outbox.close()

        await asyncio.to_thread(cluster.start)
        await engine.dispose()
        again = StoreWriter(engine, Metrics(), outbox=Outbox(path, cluster.url, OP_KINDS))
        assert again.pending == len(ops)  # replayed from disk, before anything new
        task = asyncio.create_task(again.run())
        assert await again.flush(30)
        task.cancel()
        assert again.outbox is not None and again.outbox.count() == 0
        again.outbox.close()

        stored = {c.id: c for c in await list_calls(engine, 10)}
        assert {k: v.end_reason for k, v in stored.items()} == {"c1": "completed", "c2": "completed"}
        assert [e.seq for e in await call_events_of(engine, "c1")] == list(range(1, 21))
        audit = [json.loads(r.body)["payload"]["n"] async for r in chain_rows(engine)]
        assert audit == list(range(1, 21)) + list(range(1, 6))  # once each, in the order submitted
        assert (await verify_store(engine, None)).intact
    finally:
        await engine.dispose()


async def test_a_replay_of_what_was_committed_writes_nothing_twice(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    """The process died after the commit but before the journal was told: every op replays."""
    path = tmp_path / "outbox.sqlite3"
    engine = create_engine(cluster.url)
    ops = a_call("c1", 10)
    try:
        outbox = Outbox(path, cluster.url, OP_KINDS)
        first = StoreWriter(engine, Metrics())  # commits them, and never tells the journal
        task = asyncio.create_task(first.run())
        for op in ops:
            first.submit(op)
        assert await first.flush(10)
        task.cancel()
        assert first.pending == 0  # all committed
        # The same ops, as journaled (the audit events with the ids they were written with).
        written = [row async for row in chain_rows(engine)]
        ids = iter(r.event_id for r in written)
        for op in ops:
            outbox.append(
                op
                if not isinstance(op, AuditEvent)
                else AuditEvent(op.kind, op.at, op.payload, op.call_id, next(ids))
            )
        outbox.close()

        replay = StoreWriter(engine, Metrics(), outbox=Outbox(path, cluster.url, OP_KINDS))
        task = asyncio.create_task(replay.run())
        assert await replay.flush(10)
        task.cancel()
        assert replay.outbox is not None
        replay.outbox.close()
        assert len([r async for r in chain_rows(engine)]) == 10
        assert [e.seq for e in await call_events_of(engine, "c1")] == list(range(1, 11))
    finally:
        await engine.dispose()


def test_a_journal_for_another_database_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, "sqlite+aiosqlite:///one.db", OP_KINDS)
    outbox.append(CallEnded("c1", T0, "completed"))
    outbox.close()
    other = Outbox(path, "sqlite+aiosqlite:///two.db", OP_KINDS)
    assert other.load() == [] and other.count() == 0
    other.close()
    (aside,) = tmp_path.glob("outbox.sqlite3.other-database.*")
    back = sqlite3.connect(aside)
    assert back.execute("SELECT kind FROM ops").fetchall() == [("CallEnded",)]
    back.close()


def test_one_process_per_journal_and_unreadable_rows_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, "sqlite+aiosqlite:///one.db", OP_KINDS)
    with pytest.raises(ConfigError, match="in use by another ivr-server"):
        Outbox(path, "sqlite+aiosqlite:///one.db", OP_KINDS)
    outbox.append(CallEnded("c1", T0, "completed"))
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO ops (kind, body) VALUES ('NoSuchOp', '{}'), ('CallEnded', 'not json')")
    raw.commit()
    raw.close()
    (loaded,) = outbox.load()
    assert loaded[1] == CallEnded("c1", T0, "completed")
    assert outbox._db.execute("SELECT kind FROM unreadable ORDER BY id").fetchall() == [
        ("NoSuchOp",),
        ("CallEnded",),
    ]
    outbox.close()
