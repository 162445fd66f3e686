"""Call events to Redis Streams: a real redis-server of the test's own (started, stopped and
started again), SQLite and PostgreSQL stores written by the real StoreWriter."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from ivr_server.errors import ConfigError
from ivr_server.observability.metrics import Metrics
from ivr_server.store.database import alembic_config, create_engine, upgrade
from ivr_server.store.event_bus import BusEvent, RedisStream, backlog, keep_publishing, publish_batch
from ivr_server.store.schema import call_events
from ivr_server.store.writer import CallEvent, CallStarted, StoreWriter
from tests.conftest import fresh_database
from tests.support.redis_server import Redis, stream_entries

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
STREAM = "test:call-events"


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with fresh_database(request.param, tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


async def write_calls(
    engine: AsyncEngine, calls: int, events: int, server: str = "srv-a", at: datetime = T0, first: int = 0
) -> None:
    writer = StoreWriter(engine, Metrics())
    task = asyncio.create_task(writer.run())
    for c in range(first, first + calls):
        call = f"call-{c:03d}"
        writer.submit(CallStarted(call, f"ch{c}", "+15550100", None, "400", "banking", [], server, at))
        for seq in range(1, events + 1):
            writer.submit(
                CallEvent(call, seq, at + timedelta(seconds=seq), "decision", {"n": seq, "call": c})
            )
    assert await writer.flush(30)
    task.cancel()


async def entries(bus: RedisStream) -> list[dict[str, str]]:
    return await stream_entries(bus, STREAM)


async def test_events_go_out_once_in_order_with_their_call(engine: AsyncEngine, redis_server: Redis) -> None:
    await write_calls(engine, 2, 30)
    bus = RedisStream(redis_server.url, STREAM, maxlen=10_000)
    try:
        assert await backlog(engine) == 60
        assert await publish_batch(engine, bus, limit=25) == 25
        while await publish_batch(engine, bus, limit=25):
            pass
        got = await entries(bus)
    finally:
        await bus.aclose()
    assert len(got) == 60 and await backlog(engine) == 0
    first = got[0]
    assert first["event_id"] == "call-000:1" and first["type"] == "decision" and first["flow"] == "banking"
    assert first["server_id"] == "srv-a" and first["at"] == T0.replace(second=1).isoformat()
    assert first["payload"] == '{"call": 0, "n": 1}'
    per_call = [int(e["seq"]) for e in got if e["call_id"] == "call-001"]
    assert per_call == list(range(1, 31))


async def test_a_bus_that_is_down_delays_events_and_loses_none(
    engine: AsyncEngine, redis_server: Redis
) -> None:
    await write_calls(engine, 1, 40)
    redis_server.stop()
    metrics = Metrics()
    bus = RedisStream(redis_server.url, STREAM, maxlen=10_000, timeout_s=1.0)
    with capture_logs() as logs:
        task = asyncio.create_task(keep_publishing(engine, bus, metrics, every_s=0.05, batch=10))
        try:
            await asyncio.sleep(0.5)
            assert await backlog(engine) == 40 and metrics.bus_failures._value.get() >= 1
            redis_server.start()
            async with asyncio.timeout(30):
                while await backlog(engine):
                    await asyncio.sleep(0.1)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    try:
        got = await entries(bus)
    finally:
        await bus.aclose()
    assert [e["event_id"] for e in got] == [f"call-000:{i}" for i in range(1, 41)]
    assert metrics.bus_published._value.get() == 40
    kinds = [entry["event"] for entry in logs]
    assert kinds.count("bus.publish_failed") == 1 and kinds.count("bus.publish_recovered") == 1


class SendsThenDies:
    """A publisher that dies after the bus took the batch, before the database marked it."""

    def __init__(self, bus: RedisStream) -> None:
        self.bus = bus

    async def send(self, events: Sequence[BusEvent]) -> None:
        await self.bus.send(events)
        raise OSError("the process died here")

    async def aclose(self) -> None:
        await self.bus.aclose()


async def test_a_publisher_that_dies_after_sending_sends_again_with_the_same_ids(
    engine: AsyncEngine, redis_server: Redis
) -> None:
    await write_calls(engine, 1, 10)
    bus = RedisStream(redis_server.url, STREAM, maxlen=10_000)
    try:
        with pytest.raises(OSError):
            await publish_batch(engine, SendsThenDies(bus), limit=4)
        assert await backlog(engine) == 10  # nothing marked: the batch counts as unsent
        while await publish_batch(engine, bus, limit=4):
            pass
        got = await entries(bus)
    finally:
        await bus.aclose()
    ids = [e["event_id"] for e in got]
    assert len(ids) == 14 and ids[:4] == ids[4:8]  # at least once: the first 4 twice
    assert sorted(set(ids)) == sorted(f"call-000:{i}" for i in range(1, 11))


async def test_two_servers_publishing_from_one_postgresql_share_the_work(
    redis_server: Redis, tmp_path: Path
) -> None:
    async with fresh_database("postgres", tmp_path) as url:
        await asyncio.to_thread(upgrade, url)
        engines = [create_engine(url), create_engine(url)]
        buses = [RedisStream(redis_server.url, STREAM, maxlen=10_000) for _ in engines]
        metrics = [Metrics(), Metrics()]
        try:
            await write_calls(engines[0], 10, 50)
            tasks = [asyncio.create_task(keep_publishing(e, b, m, every_s=0.02, batch=20))
                     for e, b, m in zip(engines, buses, metrics, strict=True)]  # fmt: skip
            async with asyncio.timeout(60):
                while await backlog(engines[0]):
                    await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            got = await entries(buses[0])
        finally:
            for bus in buses:
                await bus.aclose()
            for engine in engines:
                await engine.dispose()
    ids = [e["event_id"] for e in got]
    assert len(ids) == 500 and len(set(ids)) == 500  # each claimed by one of them: no resend
    sent = [m.bus_published._value.get() for m in metrics]
    assert sum(sent) == 500 and min(sent) > 0, sent


def test_a_bus_url_of_another_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="IVR_BUS_URL: a redis://"):
        RedisStream("http://127.0.0.1:6379", STREAM, 1000)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_migration_0007_counts_recorded_events_as_published(kind: str, tmp_path: Path) -> None:
    from alembic import command

    async with fresh_database(kind, tmp_path) as url:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "0006")
        engine = create_engine(url)
        try:
            await write_calls_0006(engine)
            await asyncio.to_thread(upgrade, url)
            assert await backlog(engine) == 0  # history, not news
            async with engine.connect() as conn:
                at = (await conn.execute(select(call_events.c.at, call_events.c.published_at))).one()
                assert at[0] == at[1]
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0006")
            async with engine.connect() as conn:
                columns = await conn.run_sync(
                    lambda c: [x["name"] for x in inspect(c).get_columns("call_events")]
                )
            assert "published_at" not in columns
        finally:
            await engine.dispose()


async def write_calls_0006(engine: AsyncEngine) -> None:
    """One call and one event in a database at 0006 (the writer of today knows published_at)."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO calls (id, channel_id, flow, flow_args, server_id, started_at) "
            "VALUES ('c1', 'ch1', 'banking', '[]', 'srv', '2026-12-06 12:00:00+00:00')"
        )
        await conn.exec_driver_sql(
            "INSERT INTO call_events (call_id, seq, at, type, payload) "
            "VALUES ('c1', 1, '2026-12-06 12:00:01+00:00', 'answered', '{}')"
        )


def test_the_setting_refuses_a_bus_url_of_another_kind() -> None:
    from pydantic import ValidationError

    from ivr_server.config.settings import Settings

    with pytest.raises(ValidationError, match="bus_url must be a redis://"):
        Settings(bus_url="nats://127.0.0.1:4222")
    assert Settings(bus_url="redis://127.0.0.1:6379/0").bus_stream == "ivr:call-events"


async def test_each_server_publishes_its_own_calls_and_takes_over_a_gone_servers(
    engine: AsyncEngine, redis_server: Redis
) -> None:
    """Fresh events wait for the server that took the call (one publisher per call: its events in
    order); those of a server gone for more than TAKEOVER_S are published by another."""
    now = datetime.now(UTC)
    await write_calls(engine, 2, 5, server="srv-a", at=now)
    await write_calls(engine, 1, 5, server="srv-gone", at=now - timedelta(minutes=5), first=2)
    bus = RedisStream(redis_server.url, STREAM, maxlen=10_000)
    try:
        assert await publish_batch(engine, bus, server_id="srv-b") == 5  # only the gone server's
        assert await publish_batch(engine, bus, server_id="srv-b") == 0  # srv-a's are not its own
        assert await publish_batch(engine, bus, server_id="srv-a") == 10
        got = await entries(bus)
    finally:
        await bus.aclose()
    assert [e["call_id"] for e in got[:5]] == ["call-002"] * 5 and await backlog(engine) == 0
