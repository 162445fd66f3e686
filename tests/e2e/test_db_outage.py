"""PostgreSQL stopped for a minute during two real calls, and a third call placed while it is
down (a throwaway cluster on its own port): the calls go on, every record and audit event
arrives once, in order, and the chain verifies; every call event also reaches the event bus
(a redis-server of the test's own) once the database is back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ivr_server.store.audit_append import AuditEvent
from ivr_server.store.audit_trail import chain_rows, verify_store
from ivr_server.store.database import create_engine
from ivr_server.store.event_bus import RedisStream, backlog
from ivr_server.store.queries import call_events_of, list_calls
from ivr_server.store.writer import CallEvent, Op
from tests.conftest import running_server, server_settings, settle
from tests.support.pg_cluster import ThrowawayCluster
from tests.support.redis_server import Redis, stream_entries
from tests.support.sipp import Keys, Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]


async def test_calls_go_on_while_postgres_is_down_and_nothing_is_lost(
    cluster: ThrowawayCluster, redis_server: Redis, tmp_path: Path
) -> None:
    call = SippCall(
        scenario([Pause(3000), Keys("42#")], tmp_path), service="100", workdir=tmp_path, calls=2, concurrent=2
    )
    submitted: list[Op] = []
    settings = server_settings(cluster.url, bus_url=redis_server.url, bus_stream="outage")
    async with running_server(settings) as server:
        assert server.writer is not None and server.manager is not None
        submit = server.writer.submit

        def recording(op: Op) -> None:
            submitted.append(op)
            submit(op)

        server.writer.submit = recording  # type: ignore[method-assign]
        calls = asyncio.create_task(call.run())
        async with asyncio.timeout(20):
            while len(server.manager.sessions) < 2:
                await asyncio.sleep(0.05)
        await asyncio.to_thread(cluster.stop)
        down_at = asyncio.get_running_loop().time()
        assert await calls == 0, call.errors()  # both calls finished with the database down
        third = SippCall(scenario([Pause(1000), Keys("7#")], tmp_path), service="100", workdir=tmp_path)
        assert await third.run() == 0, third.errors()  # and a new one is taken
        async with asyncio.timeout(20):
            while server.manager.sessions:
                await asyncio.sleep(0.05)
        assert server.writer.outbox is not None
        waiting = server.writer.outbox.count()
        assert waiting > 0 and server.writer.pending == waiting
        await asyncio.sleep(max(0.0, 60 - (asyncio.get_running_loop().time() - down_at)))  # a minute down
        await asyncio.to_thread(cluster.start)
        await settle(server, 60)
        assert server.writer.outbox.count() == 0
        async with asyncio.timeout(30):  # the publisher catches up from the database
            while await backlog(server.writer.engine):
                await asyncio.sleep(0.1)
        bus = RedisStream(redis_server.url, "outage", 10_000)
        try:
            on_bus = await stream_entries(bus, "outage")
        finally:
            await bus.aclose()

    engine = create_engine(cluster.url)
    try:
        calls_stored = await list_calls(engine, 10)
        assert sorted(c.end_reason or "" for c in calls_stored) == ["completed"] * 3
        for record in calls_stored:
            sent = [(o.seq, o.type) for o in submitted if isinstance(o, CallEvent) and o.call_id == record.id]
            stored = [(e.seq, e.type) for e in await call_events_of(engine, record.id)]
            assert stored == sent and [s for s, _ in sent] == list(range(1, len(sent) + 1))
            published = [(int(e["seq"]), e["type"]) for e in on_bus if e["call_id"] == record.id]
            assert published == sent  # each event once, in order (no publisher died)
        audit = [json.loads(r.body) async for r in chain_rows(engine)]
        sent_audit = [(o.kind, o.call_id) for o in submitted if isinstance(o, AuditEvent)]
        during = [(a["kind"], a["call_id"]) for a in audit if a["kind"] != "redaction"][-len(sent_audit) :]
        assert during == sent_audit  # the last ones in the chain, in the order submitted
        assert sum(1 for k, _ in sent_audit if k == "call_ended") == 3
        assert (await verify_store(engine, None)).intact
    finally:
        await engine.dispose()
