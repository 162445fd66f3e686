"""Stopping and overload with the server as a process: SIGTERM during two calls lets both finish
while a new call goes on in the dialplan; above IVR_MAX_CALLS a new call is declined at once; past
a measured load limit a new call hears the server's high-volume prompt and goes to the overflow."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import pytest

from ivr_server.ops.sipp import free_port
from ivr_server.store.audit_trail import recent, verify_store
from ivr_server.store.database import create_engine
from ivr_server.store.queries import list_calls
from tests.conftest import fresh_database, sandbox
from tests.support.server_process import migrate, read_until, start
from tests.support.sipp import Keys, Pause, SippCall, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]


def console_lines(marker: str) -> list[str]:
    console = Path(sandbox("path").stdout.strip()).parent / "asterisk-console.log"
    return [line for line in console.read_text(errors="replace").splitlines() if marker in line]


async def serving(url: str, lines: list[dict], **more: str) -> asyncio.subprocess.Process:
    """`ivr-server run` on a migrated ``url``, connected and reconciled."""
    env = {
        "IVR_DATABASE_URL": url,
        "IVR_METRICS_PORT": "0",
        "IVR_MEDIA_PORT_MIN": "41400",
        "IVR_MEDIA_PORT_MAX": "41499",
        "IVR_ARI_PASSWORD": "ivr-sandbox",
        **more,
    }
    await migrate(env)
    proc = await start(env)
    await read_until(proc, "ari.reconciled", lines)
    return proc


async def stored(url: str) -> tuple[list[str | None], set[str], bool]:
    engine = create_engine(url)
    try:
        reasons = [c.end_reason for c in await list_calls(engine, 10)]
        audited = {
            json.dumps(e.payload.get("reason")) for e in await recent(engine, 100, kind="call_declined")
        }
        return reasons, audited, (await verify_store(engine, None)).intact
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_sigterm_lets_two_calls_finish_and_sends_new_ones_to_the_dialplan(
    kind: str, tmp_path: Path
) -> None:
    before = len(console_lines("IVR_STATUS=server_draining"))
    two = SippCall(
        scenario([Pause(4000), Keys("55#")], tmp_path), service="100", workdir=tmp_path, calls=2, concurrent=2
    )
    async with fresh_database(kind, tmp_path) as url:
        lines: list[dict] = []
        proc = await serving(url, lines)
        calls = asyncio.create_task(two.run())
        await read_until(proc, "call.started", lines)
        await read_until(proc, "call.started", lines)
        proc.send_signal(signal.SIGTERM)
        await read_until(proc, "calls.draining", lines)
        late = SippCall(scenario([Pause(200)], tmp_path), service="100", workdir=tmp_path)
        assert await late.run() == 0, late.errors()  # answered by ivr-fallback, which hangs up
        assert await calls == 0, two.errors()
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
        lines += [json.loads(line) for line in rest.decode().splitlines()]
        assert proc.returncode == 0, lines[-3:]
        reasons, declined, intact = await stored(url)
    events = [line["event"] for line in lines]
    assert events.index("calls.draining") < events.index("calls.drained") < events.index("server.stopped")
    (decline,) = [line for line in lines if line["event"] == "call.declined"]
    assert decline["reason"] == "server_draining"
    assert reasons == ["completed", "completed"], reasons  # finished their flow, not cut off
    assert declined == {'"server_draining"'} and intact
    assert len(console_lines("IVR_STATUS=server_draining")) == before + 1


async def test_above_max_calls_a_new_call_is_declined_at_once(tmp_path: Path) -> None:
    before = len(console_lines("IVR_STATUS=busy"))
    first = SippCall(scenario([Pause(4000), Keys("1#")], tmp_path), service="100", workdir=tmp_path)
    async with fresh_database("sqlite", tmp_path) as url:
        lines: list[dict] = []
        proc = await serving(url, lines, IVR_MAX_CALLS="1")
        ongoing = asyncio.create_task(first.run())
        await read_until(proc, "call.started", lines)
        second = SippCall(scenario([Pause(200)], tmp_path), service="100", workdir=tmp_path)
        assert await second.run() == 0, second.errors()  # the busy notice, then the PBX hangs up
        await read_until(proc, "call.declined", lines)
        assert await ongoing == 0, first.errors()
        await read_until(proc, "call.ended", lines)
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        reasons, declined, _ = await stored(url)
    (decline,) = [line for line in lines if line["event"] == "call.declined"]
    assert decline["reason"] == "busy" and decline["calls"] == 1
    assert reasons == ["completed"] and declined == {'"busy"'}
    assert len(console_lines("IVR_STATUS=busy")) == before + 1


async def test_past_a_load_limit_a_new_call_hears_the_high_volume_prompt_and_overflows(
    tmp_path: Path,
) -> None:
    """With an event-loop lag limit no loop keeps (1 us), the call in progress is kept and the next
    is declined for load: back in the dialplan, Asterisk plays the prompt it fetches from the
    server's metrics listener, then sends the caller to ivr-overflow; a metric and an audit event."""
    port = free_port(socket.SOCK_STREAM)
    prompt = f"http://127.0.0.1:{port}/prompts/high_volume.wav"
    before = len(console_lines("ivr-overflow: declined for load"))
    playing = len(console_lines(f"Playing '{prompt}"))
    first = SippCall(scenario([Pause(5000), Keys("1#")], tmp_path), service="100", workdir=tmp_path)
    async with fresh_database("sqlite", tmp_path) as url:
        lines: list[dict] = []
        proc = await serving(
            url, lines, IVR_ADMISSION="load", IVR_ADMIT_LOOP_LAG_MS="0.001", IVR_METRICS_PORT=str(port)
        )
        ongoing = asyncio.create_task(first.run())
        await read_until(proc, "call.started", lines)
        await asyncio.sleep(1.5)  # heartbeats and CPU samples with the call in progress
        second = SippCall(scenario([Pause(200)], tmp_path), service="100", workdir=tmp_path)
        assert await second.run() == 0, second.errors()  # the prompt, the overflow, the PBX hangs up
        await read_until(proc, "call.declined", lines)
        assert await ongoing == 0, first.errors()
        await read_until(proc, "call.ended", lines)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
        reasons, declined, intact = await stored(url)
    (decline,) = [line for line in lines if line["event"] == "call.declined"]
    assert (
        decline["reason"] == "overload"
        and decline["why"].startswith("event-loop lag")
        and decline["calls"] == 1
    )
    assert decline["load"]["loop_lag_ms"] > 0 and decline["load"]["cpu"] is not None
    assert reasons == ["completed"] and declined == {'"overload"'} and intact
    assert len(console_lines("ivr-overflow: declined for load")) == before + 1
    assert len(console_lines(f"Playing '{prompt}")) == playing + 1
    assert not [line for line in console_lines("high_volume") if "WARNING" in line or "ERROR" in line]
