"""Asterisk going away and coming back: reconnection with backoff, calls closed with a reason."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import structlog

from ivr_server.store.audit_trail import recent, verify_store
from ivr_server.store.database import create_engine
from ivr_server.store.queries import call_events_of, list_calls
from tests.conftest import running_server, sandbox, server_settings, settle
from tests.e2e.test_call import stored_call, wait_for_event
from tests.support.sipp import Keys, Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

ARI = "http://127.0.0.1:8088/ari"
AUTH = httpx.BasicAuth("ivr", "ivr-sandbox")


def waits_of(logs: list[dict]) -> list[float]:
    return [e["wait_s"] for e in logs if e["event"] == "ari.reconnect_wait"]


async def first_ok(client: httpx.AsyncClient, path: str, timeout_s: float = 60) -> float:
    """Poll every 20 ms until ``path`` answers 200; returns the monotonic time it did."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                if (await client.get(path)).status_code == 200:
                    return time.monotonic()
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)


async def test_idle_server_reconnects_within_2s_of_asterisk_answering(
    database_url: str, tmp_path: Path
) -> None:
    """Asterisk stops and starts while no call is up: the server retries with growing, capped,
    never-zero waits and registers its app again within 2 s of ARI answering."""
    settings = server_settings(database_url)
    with structlog.testing.capture_logs() as logs:
        async with running_server(settings) as server:
            assert server.manager is not None
            await asyncio.to_thread(sandbox, "stop")
            await asyncio.sleep(3)  # several failed attempts while Asterisk is down
            starting = asyncio.create_task(asyncio.to_thread(sandbox, "start"))
            async with httpx.AsyncClient(base_url=ARI, auth=AUTH, timeout=1) as ari:
                ari_at = await first_ok(ari, "/asterisk/info")
                app_at = await first_ok(ari, "/applications/ivr-server")
            await starting
            async with asyncio.timeout(5):
                await server.manager.reconciled.wait()
            connects = server.metrics.registry.get_sample_value("ivr_ari_connects_total")
    print(f"reconnected {app_at - ari_at:.3f} s after ARI answered; waits between tries: {waits_of(logs)}")
    assert app_at - ari_at <= 2.0, f"reconnected {app_at - ari_at:.2f}s after ARI answered"
    assert connects == 2
    waits = waits_of(logs)
    assert len(waits) >= 4, waits
    assert min(waits) >= settings.ari_reconnect_initial_s, "a retry without waiting"
    assert max(waits) <= settings.ari_reconnect_max_s
    assert waits[:4] == sorted(waits[:4]) and waits[3] > waits[0], f"no backoff: {waits}"


def crash_asterisk() -> None:
    """SIGKILL Asterisk: no hangups, no events, the socket just drops (then unmount)."""
    pidfile = Path(sandbox("path").stdout.strip()).parent / "asterisk.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    sandbox("stop")


async def test_call_is_closed_when_asterisk_crashes_and_restarts(database_url: str, tmp_path: Path) -> None:
    """A call in progress when Asterisk crashes and comes back is closed in the store (its
    channel is gone when the server reconciles) with a terminal audit event, its port and tasks
    are released, and the server takes the next call."""
    settings = server_settings(database_url, ari_lost_call_grace_s=60)
    call = SippCall(scenario([Pause(30000)], tmp_path), service="100", workdir=tmp_path, timeout_s=40)
    async with running_server(settings) as server:
        assert server.manager is not None
        caller = asyncio.create_task(call.run())
        await wait_for_event(database_url, "media_started")
        await asyncio.to_thread(crash_asterisk)
        await asyncio.to_thread(sandbox, "start")
        await settle(server, timeout_s=20)
        assert not server.manager.deps.ports.in_use
        call.kill()
        await asyncio.gather(caller, return_exceptions=True)
        async with asyncio.timeout(30):  # reconnected and reconciled
            while not server.manager.reconciled.is_set():
                await asyncio.sleep(0.05)
        after = SippCall(scenario([Pause(1500), Keys("7#")], tmp_path), service="100", workdir=tmp_path)
        assert await after.run() == 0, after.errors()
        await settle(server)
    engine = create_engine(database_url)
    try:
        first, second = sorted(await list_calls(engine, 5), key=lambda c: c.started_at)
        events = await call_events_of(engine, first.id)
        ended = [e.payload for e in await recent(engine, 50, call_id=first.id, kind="call_ended")]
        verdict = await verify_store(engine, None)
    finally:
        await engine.dispose()
    assert (first.end_reason, second.end_reason) == ("channel_gone", "completed")
    assert first.ended_at is not None and events[-1].type == "call_ended"
    assert [e["reason"] for e in ended] == ["channel_gone"] and verdict.intact


async def test_call_is_closed_when_asterisk_stays_away(database_url: str, tmp_path: Path) -> None:
    """If a crashed Asterisk does not come back within the grace time, the call is closed as
    asterisk_lost without waiting for it."""
    settings = server_settings(database_url, ari_lost_call_grace_s=1.5)
    call = SippCall(scenario([Pause(30000)], tmp_path), service="100", workdir=tmp_path, timeout_s=40)
    try:
        async with running_server(settings) as server:
            assert server.manager is not None
            caller = asyncio.create_task(call.run())
            await wait_for_event(database_url, "media_started")
            stopped_at = time.monotonic()
            await asyncio.to_thread(crash_asterisk)
            await settle(server, timeout_s=10)
            closed_after = time.monotonic() - stopped_at
            assert not server.manager.deps.ports.in_use
            call.kill()
            await asyncio.gather(caller, return_exceptions=True)
    finally:
        await asyncio.to_thread(sandbox, "start")
    record, _ = await stored_call(database_url)
    assert record.end_reason == "asterisk_lost"
    assert closed_after < 5, f"closed {closed_after:.1f}s after Asterisk stopped"
