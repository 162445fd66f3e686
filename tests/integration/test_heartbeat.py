"""Servers' heartbeats on a real PostgreSQL: who is silent by the database's clock, whose calls
are open, and a claim that exactly one of several live servers wins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.observability.metrics import Metrics
from ivr_server.store.database import create_engine, upgrade
from ivr_server.store.heartbeat import beat, claim, forget, last_intent, open_calls, silent_peers
from ivr_server.store.schema import calls, servers
from ivr_server.store.writer import CallEnded, CallEvent, CallStarted, StoreWriter
from tests.conftest import fresh_database

ASTERISK = "http://127.0.0.1:8088"
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


async def age(engine: AsyncEngine, server_id: str, seconds: float) -> None:
    """The server last beat ``seconds`` ago."""
    async with engine.begin() as conn:
        await conn.execute(
            update(servers)
            .where(servers.c.id == server_id)
            .values(seen_at=func.clock_timestamp() - func.make_interval(0, 0, 0, 0, 0, 0, seconds))
        )


async def test_a_peer_is_silent_only_past_the_limit_and_only_on_the_same_asterisk(
    engine: AsyncEngine,
) -> None:
    for server, asterisk in (("a", ASTERISK), ("b", ASTERISK), ("c", "http://10.0.0.2:8088")):
        await beat(engine, server, asterisk)
    assert await silent_peers(engine, "a", ASTERISK, 1.5) == []
    await age(engine, "b", 1.0)
    assert await silent_peers(engine, "a", ASTERISK, 1.5) == []
    await age(engine, "b", 2.0)
    await age(engine, "c", 60.0)  # on another Asterisk: its calls are not this one's to reach
    assert await silent_peers(engine, "a", ASTERISK, 1.5) == ["b"]
    assert await silent_peers(engine, "b", ASTERISK, 1.5) == []  # a server never judges itself
    await beat(engine, "b", ASTERISK)  # back: beating again
    assert await silent_peers(engine, "a", ASTERISK, 1.5) == []
    async with engine.connect() as conn:
        started = {r.id: r.started_at for r in await conn.execute(select(servers))}
    assert set(started) == {"a", "b", "c"}
    await forget(engine, "b")  # stopped cleanly: its row is gone, it is never taken for dead
    await asyncio.sleep(0.05)
    assert await silent_peers(engine, "a", ASTERISK, 0.01) == []
    assert await silent_peers(engine, "a", "http://10.0.0.2:8088", 0.01) == ["c"]


async def test_the_open_calls_of_a_dead_server_are_claimed_once_among_many(engine: AsyncEngine) -> None:
    writer = StoreWriter(engine, Metrics())
    task = asyncio.create_task(writer.run())
    for n, server in enumerate(["b", "b", "b", "a"]):
        writer.submit(
            CallStarted(f"call-{n}", f"ch-{n}", "+15550100", None, "400", "banking", [], server, T0)
        )
    writer.submit(CallEnded("call-2", T0, "hangup"))
    writer.submit(CallEvent("call-0", 1, T0, "decision", {"state": "welcome", "intent": "lost_card"}))
    writer.submit(CallEvent("call-0", 2, T0, "decision", {"state": "lost_card", "intent": None}))
    assert await writer.flush(30)
    task.cancel()

    lost = await open_calls(engine, ["b"])
    assert [(c.id, c.channel_id, c.flow, c.server_id) for c in lost] == [
        ("call-0", "ch-0", "banking", "b"),
        ("call-1", "ch-1", "banking", "b"),
    ]
    assert await open_calls(engine, []) == []
    assert await last_intent(engine, "call-0") == "lost_card"  # the last decision that named one
    assert await last_intent(engine, "call-1") is None

    # Three live servers race for each call: one wins it, and it is ended with the reason.
    wins = await asyncio.gather(*(claim(engine, c.id, "server_lost") for c in lost for _ in range(3)))
    assert sum(wins) == 2
    assert await open_calls(engine, ["b"]) == []
    async with engine.connect() as conn:
        reasons = dict((await conn.execute(select(calls.c.id, calls.c.end_reason))).all())
    assert reasons == {"call-0": "server_lost", "call-1": "server_lost", "call-2": "hangup", "call-3": None}
    assert not await claim(engine, "call-2", "server_lost")  # ended before: nothing to take
