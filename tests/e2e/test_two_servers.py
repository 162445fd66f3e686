"""Two servers on one PostgreSQL behind one number: the sandbox Asterisk's extension 410 gives a
call to the first server's ARI application and, when that one declines it (here: busy at its
IVR_MAX_CALLS of 1), to the second's. Both calls are served; a flow deployed once reaches both
servers; the store sees every call with the server that took it; the audit chain both wrote
stays one valid chain; every call event of both reaches the event bus once. Then two PBXs (a
second sandbox Asterisk) with a server each, both with the application name their dialplans
use, on one PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr_server.config import ToolService
from ivr_server.store.audit_trail import chain_rows, verify_store
from ivr_server.store.database import create_engine
from ivr_server.store.deployments import deploy
from ivr_server.store.event_bus import RedisStream, backlog
from ivr_server.store.flow_stats import flow_stats
from ivr_server.store.queries import CallRecord, call_events_of, list_calls
from tests.conftest import _migrated, fresh_database, running_server, sandbox, server_settings, settle
from tests.e2e.test_banking_call import prompt_ms
from tests.e2e.test_flow_versions import serving_version
from tests.integration.test_deployments import version
from tests.support.redis_server import Redis, stream_entries
from tests.support.sipp import Keys, Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]


def balance_by_keys() -> list[Keys | Pause]:
    """The banking line by keypad: 1 (balance), the account number, 9 (nothing else)."""
    return [
        Pause(prompt_ms("welcome")),
        Keys("1"),
        Pause(prompt_ms("ask_account")),
        Keys("12345678"),
        Pause(prompt_ms("fetching") + prompt_ms("balance", balance="1234.56") + prompt_ms("anything_else")),
        Keys("9"),
    ]


async def both_served(engine: AsyncEngine, bank: str) -> list[CallRecord]:
    """The two balance calls, each completed, fetched once from the bank, counted in the flow's
    stats, with the audit chain intact; the calls' records."""
    records = await list_calls(engine, 10)
    assert [c.end_reason for c in records] == ["completed", "completed"]
    async with httpx.AsyncClient() as http:
        made = [c["path"] for c in (await http.get(f"{bank}/_calls")).json()]
    assert made == ["/accounts/12345678/balance"] * 2
    (stats,) = await flow_stats(engine, "banking")
    assert stats.calls == 2
    assert (await verify_store(engine, None)).intact
    return records


async def test_two_servers_on_one_postgresql_share_the_calls_the_flows_the_chain_and_the_bus(
    bank: str, redis_server: Redis, tmp_path: Path
) -> None:
    async with fresh_database("postgres", tmp_path) as url:
        await _migrated(url)
        bank_service = ToolService(url=bank, breaker_failures=3, breaker_reset_s=30.0)
        common = {"tools_services": {"bank": bank_service}, "flows_poll_s": 0.2, "bus_url": redis_server.url,
                  "bus_stream": "two"}  # fmt: skip
        first = server_settings(url, ari_app="ivr-server-a", max_calls=1, media_port_min=41000,
                                media_port_max=41099, **common)  # fmt: skip
        second = server_settings(url, ari_app="ivr-server-b", media_port_min=41100, media_port_max=41199,
                                 **common)  # fmt: skip
        engine = create_engine(url)
        try:
            async with running_server(first) as a, running_server(second) as b:
                await deploy(engine, *version(1), None, None)  # once, into the shared store
                await serving_version(a, 1)
                await serving_version(b, 1)
                call = SippCall(scenario(balance_by_keys(), tmp_path, bye_timeout_ms=30000), service="410",
                                workdir=tmp_path, calls=2, concurrent=2)  # fmt: skip
                assert await call.run() == 0, call.errors()
                await settle(a, 30)
                await settle(b, 30)
                async with asyncio.timeout(30):
                    while await backlog(engine):
                        await asyncio.sleep(0.1)
            calls = await both_served(engine, bank)
            assert sorted(c.server_id.rsplit("/", 1)[1] for c in calls) == ["ivr-server-a", "ivr-server-b"]
            started = [r.body async for r in chain_rows(engine) if '"server_started"' in r.body]
            assert any("ivr-server-a" in body for body in started) and any(
                "ivr-server-b" in body for body in started
            )
            bus = RedisStream(redis_server.url, "two", 10_000)
            try:
                entries = await stream_entries(bus, "two")
            finally:
                await bus.aclose()
            for record in calls:
                stored = [(e.seq, e.type) for e in await call_events_of(engine, record.id)]
                on_bus = [(int(e["seq"]), e["type"]) for e in entries if e["call_id"] == record.id]
                assert on_bus == stored, record.server_id
            assert {e["server_id"].rsplit("/", 1)[1] for e in entries} == {"ivr-server-a", "ivr-server-b"}
        finally:
            await engine.dispose()


SECOND_PBX = 1  # scripts/asterisk-sandbox's IVR_SANDBOX_INSTANCE: ARI 8188, SIP 5160


@pytest.fixture
def second_asterisk() -> Iterator[str]:
    """A second sandbox Asterisk with this checkout's asterisk_conf (a left-over one is
    restarted), stopped after the test; its HTTP server (IVR_ARI_URL)."""
    sandbox("stop", instance=SECOND_PBX, check=False)
    result = sandbox("start", instance=SECOND_PBX, check=False)
    if result.returncode != 0:
        pytest.fail(f"the second sandbox Asterisk does not start:\n{result.stderr}")
    try:
        yield "http://127.0.0.1:8188"
    finally:
        sandbox("stop", instance=SECOND_PBX, check=False)


async def test_two_pbxs_with_a_server_each_share_one_postgresql(
    bank: str, second_asterisk: str, tmp_path: Path
) -> None:
    """Each PBX's extension 400 goes to Stasis(ivr-server,banking), so both servers use the
    application name ivr-server: the store still tells them apart (the server id names the
    PBX). The second server starts while the first has a call in progress, and that call is
    not taken for one of its own left open by a crash (with host/application alone, it was
    closed as orphaned); a call to each PBX is served by that PBX's server, a flow deployed
    once reaches both, and their audit events make one valid chain."""
    async with fresh_database("postgres", tmp_path) as url:
        await _migrated(url)
        bank_service = ToolService(url=bank, breaker_failures=3, breaker_reset_s=30.0)
        common = {"tools_services": {"bank": bank_service}, "flows_poll_s": 0.2}
        first = server_settings(url, media_port_min=41200, media_port_max=41299, **common)
        second = server_settings(url, ari_url=second_asterisk, media_port_min=41300, media_port_max=41399,
                                 **common)  # fmt: skip

        def call(name: str, target: str) -> SippCall:
            workdir = tmp_path / name
            workdir.mkdir()
            steps = scenario(balance_by_keys(), workdir, bye_timeout_ms=30000)
            return SippCall(steps, service="400", workdir=workdir, target=target)

        engine = create_engine(url)
        try:
            async with running_server(first) as a:
                await deploy(engine, *version(1), None, None)  # once, into the shared store
                await serving_version(a, 1)
                to_first = call("first", "127.0.0.1:5060")
                first_call = asyncio.create_task(to_first.run())
                async with asyncio.timeout(30):
                    while not a.manager or not a.manager.sessions:
                        await asyncio.sleep(0.05)
                async with running_server(second) as b:
                    ids = (a.server_id, b.server_id)
                    assert ids[0].endswith(":8088/ivr-server") and ids[1].endswith(":8188/ivr-server")
                    await serving_version(b, 1)
                    to_second = call("second", "127.0.0.1:5160")
                    exits = [await first_call, await to_second.run()]
                    assert exits == [0, 0], [to_first.errors(), to_second.errors()]
                    await settle(a, 30)
                    await settle(b, 30)
            records = await both_served(engine, bank)
            assert sorted(c.server_id for c in records) == sorted(ids)
        finally:
            await engine.dispose()
