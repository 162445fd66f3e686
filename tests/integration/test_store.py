"""The store on SQLite and PostgreSQL: migrations, ordered writes, idempotent retries, reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.errors import SchemaNotCurrent, StoreError
from ivr_server.observability.metrics import Metrics
from ivr_server.store.database import create_engine, current_revision, head_revision, require_current_schema
from ivr_server.store.queries import (
    CallNotFound,
    call_events_of,
    find_call,
    list_calls,
    open_call_ids,
    turns_of,
)
from ivr_server.store.writer import CallAnswered, CallEnded, CallEvent, CallStarted, StoreWriter, Turn
from tests.conftest import fresh_database

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def started(call_id: str, at: datetime = T0, **kw: str) -> CallStarted:
    return CallStarted(
        call_id=call_id,
        channel_id=kw.get("channel", "ch-" + call_id),
        caller_number=kw.get("caller", "+15550100"),
        caller_name="Caller",
        dialed_number="100",
        flow="digits",
        flow_args=["digits"],
        server_id="test/ivr",
        started_at=at,
    )


async def write(engine: AsyncEngine, *ops: object) -> StoreWriter:
    writer = StoreWriter(engine, Metrics())
    task = asyncio.create_task(writer.run())
    for op in ops:
        writer.submit(op)  # type: ignore[arg-type]
    assert await writer.flush(10)
    task.cancel()
    return writer


async def test_a_call_and_its_events_round_trip_in_order(engine: AsyncEngine) -> None:
    events = [
        CallEvent("c1", i, T0 + timedelta(seconds=i), f"kind{i % 3}", {"i": i, "nested": {"ok": True}})
        for i in range(1, 51)
    ]
    await write(
        engine,
        started("c1"),
        CallAnswered("c1", T0 + timedelta(seconds=1)),
        *events,
        CallEnded("c1", T0 + timedelta(seconds=60), "completed"),
    )
    record = await find_call(engine, "c1")
    assert (record.caller_number, record.flow, record.end_reason) == ("+15550100", "digits", "completed")
    assert record.started_at == T0 and record.duration_s == 60.0
    stored = await call_events_of(engine, "c1")
    assert [e.seq for e in stored] == list(range(1, 51))
    assert stored[4].payload == {"i": 5, "nested": {"ok": True}} and stored[4].type == "kind2"
    (listed,) = await list_calls(engine)
    assert listed.event_count == 50


async def test_turns_round_trip_once_each(engine: AsyncEngine) -> None:
    caller = Turn(
        "t1",
        1,
        "caller",
        T0,
        "check my balance",
        "silence",
        0.91,
        "pocketsphinx",
        "ps/en-us",
        start_ms=1200,
        end_ms=2300,
        latency_ms=412,
        detail={"words": ["check", "my", "balance"]},
    )
    system = Turn(
        "t1", 2, "system", T0, "Your balance is ten dollars.", "completed", engine="piper", cached=False
    )
    await write(engine, started("t1"), caller, system, caller)  # a retried turn lands once
    stored = await turns_of(engine, "t1")
    assert [(t.seq, t.role, t.outcome) for t in stored] == [
        (1, "caller", "silence"),
        (2, "system", "completed"),
    ]
    assert (
        stored[0].text == "check my balance" and stored[0].latency_ms == 412 and stored[0].confidence == 0.91
    )
    assert (stored[0].start_ms, stored[0].end_ms, stored[0].model) == (1200, 2300, "ps/en-us")
    assert stored[0].detail == {"words": ["check", "my", "balance"]} and stored[0].at == T0
    assert stored[1].cached is False and stored[1].engine == "piper" and stored[1].detail == {}


async def test_resubmitting_after_an_unknown_commit_does_not_duplicate(engine: AsyncEngine) -> None:
    """A batch retried after a commit whose outcome was lost lands once."""
    ops = [started("c2"), *(CallEvent("c2", i, T0, "e", {}) for i in range(1, 6))]
    await write(engine, *ops)
    await write(engine, *ops)
    assert len(await call_events_of(engine, "c2")) == 5
    assert len(await list_calls(engine)) == 1


async def test_the_first_end_reason_wins(engine: AsyncEngine) -> None:
    await write(
        engine,
        started("c3"),
        CallEnded("c3", T0 + timedelta(seconds=5), "caller_hangup"),
        CallEnded("c3", T0 + timedelta(seconds=9), "orphaned"),
    )
    record = await find_call(engine, "c3")
    assert record.end_reason == "caller_hangup" and record.duration_s == 5.0


async def test_a_row_the_database_rejects_is_dropped_alone(engine: AsyncEngine) -> None:
    """An event for a call that does not exist (foreign key) is logged and dropped; the good
    rows around it in the same batch still land."""
    writer = await write(
        engine,
        started("c4"),
        CallEvent("c4", 1, T0, "ok", {}),
        CallEvent("no-such-call", 1, T0, "bad", {}),
        CallEvent("c4", 2, T0, "ok", {}),
    )
    assert writer.rejected == 1
    assert [e.seq for e in await call_events_of(engine, "c4")] == [1, 2]


async def test_oversized_values_are_clipped_not_rejected(engine: AsyncEngine) -> None:
    await write(engine, started("c5", caller="9" * 500))
    assert (await find_call(engine, "c5")).caller_number == "9" * 64


async def test_lookup_by_prefix(engine: AsyncEngine) -> None:
    await write(engine, started("abc-1"), started("abd-2", T0 + timedelta(seconds=1)))
    assert (await find_call(engine, "abc")).id == "abc-1"
    with pytest.raises(CallNotFound, match="ambiguous"):
        await find_call(engine, "ab")
    with pytest.raises(CallNotFound, match="no call with id 'zzz'"):
        await find_call(engine, "zzz")
    with pytest.raises(CallNotFound):
        await find_call(engine, "%")
    assert [c.id for c in await list_calls(engine)] == ["abd-2", "abc-1"]
    assert sorted(await open_call_ids(engine, "test/ivr")) == ["abc-1", "abd-2"]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_an_unmigrated_database_is_refused_with_the_command_to_run(kind: str, tmp_path: Path) -> None:
    async with fresh_database(kind, tmp_path) as url:
        engine = create_engine(url)
        try:
            with pytest.raises(SchemaNotCurrent, match="run: ivr-server db upgrade") as err:
                await require_current_schema(engine)
            assert "none (empty)" in str(err.value) and head_revision() in str(err.value)
        finally:
            await engine.dispose()


async def test_migrations_reach_head(engine: AsyncEngine) -> None:
    assert await current_revision(engine) == head_revision()


async def test_an_unreachable_database_keeps_writes_pending() -> None:
    """Nothing is dropped while the database is down: operations wait, failures are counted."""
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    metrics = Metrics()
    writer = StoreWriter(engine, metrics)
    task = asyncio.create_task(writer.run())
    writer.submit(started("c9"))
    writer.submit(CallEvent("c9", 1, T0, "e", {}))
    try:
        assert await writer.flush(1.5) is False
        assert writer.pending == 2
        assert metrics.registry.get_sample_value("ivr_store_failures_total") >= 2
        with pytest.raises(StoreError, match="cannot reach the database"):
            await current_revision(engine)
    finally:
        task.cancel()
        await engine.dispose()
