"""A server killed mid-call (SIGKILL): its callers go on. Two servers on one PostgreSQL behind
extension 410; the first (a process of its own) takes the call and is killed. The second, in
this process, finds it silent and sends on what it left: a caller in the flow goes to
[ivr-server-lost] with IVR_STATUS=server_lost and the intent, hears "one moment please" and
reaches the agents; a caller already talking with an agent (SIPp as the agent's phone) stays
with the agent. Measured at the caller's RTP port: what the caller hears after the kill comes
within 3 s. Nothing of the call is lost from the store, and its audit chain holds."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ivr_server.app import IvrServer
from ivr_server.config import ToolService
from ivr_server.store.audit_trail import recent, verify_store
from ivr_server.store.database import create_engine
from ivr_server.store.queries import call_events_of, list_calls
from tests.conftest import (
    TEST_ASR_RESOURCES,
    _migrated,
    fresh_database,
    running_server,
    sandbox,
    server_settings,
    settle,
)
from tests.e2e.test_banking_call import prompt_ms
from tests.e2e.test_voice_call import audio_of
from tests.e2e.test_warm_transfer import AGENT_WORDS
from tests.support.audio import piper_voice
from tests.support.capture import Datagram, LoopbackCapture
from tests.support.server_process import read_until, start
from tests.support.sipp import Keys, Pause, SippAgent, SippCall, agent_scenario, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

MAX_DEAD_AIR_S = 3.0
AUDIBLE = 32768 * 10 ** (-50 / 20)  # RMS of a 20 ms frame: -50 dBFS


def heard_at(datagrams: list[Datagram], port: int) -> list[float]:
    """When the caller's port received a packet with something to hear in it (above -50 dBFS, as
    test_warm_transfer.silent_runs_s counts)."""
    frames = audio_of([d for d in datagrams if d.dst_port == port])
    return [t for t, pcm in frames if np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > AUDIBLE]


@dataclass
class Killed:
    """What a kill left: the survivor's counts, the caller's port's packets, the kill's time."""

    rescued: dict[str, float]
    datagrams: list[Datagram]
    killed_at: float


@asynccontextmanager
async def two_servers(
    bank: str, tmp_path: Path
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process, IvrServer]]:
    """On a fresh PostgreSQL: server A (ivr-server-a, first behind extension 410) as a process of
    its own, to be killed, and server B (ivr-server-b) in this process."""
    async with fresh_database("postgres", tmp_path) as url:
        await _migrated(url)
        first = {
            "IVR_DATABASE_URL": url,
            "IVR_ARI_APP": "ivr-server-a",
            "IVR_ARI_PASSWORD": "ivr-sandbox",
            "IVR_METRICS_PORT": "19468",
            "IVR_MEDIA_PORT_MIN": "41400",
            "IVR_MEDIA_PORT_MAX": "41499",
            "IVR_TOOLS_SERVICES": f'{{"bank": {{"url": "{bank}"}}}}',
            "IVR_TTS_CACHE_DIR": str(Path(tempfile.gettempdir()) / "ivr-test-tts-cache"),
            "IVR_ASR_RESOURCES_DIR": str(TEST_ASR_RESOURCES),
            "IVR_OUTBOX_PATH": str(tmp_path / "a-outbox.sqlite3"),
        }
        second = server_settings(url, ari_app="ivr-server-b", media_port_min=41500, media_port_max=41599,
                                 tools_services={"bank": ToolService(url=bank)})  # fmt: skip
        proc = await start(first)
        try:
            await read_until(proc, "ari.reconciled", [])
            async with running_server(second) as survivor:
                yield url, proc, survivor
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def kill_during(
    call: SippCall,
    proc: asyncio.subprocess.Process,
    survivor: IvrServer,
    event: str,
    after_s: float,
    tmp_path: Path,
) -> Killed:
    """Place ``call``; SIGKILL server A ``after_s`` after it logs ``event``; the call's end."""
    async with LoopbackCapture(tmp_path / "caller.pcap", f"udp dst port {call.media_port}") as cap:
        placed = asyncio.create_task(call.run())
        await read_until(proc, event, [])
        await asyncio.sleep(after_s)
        proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        await proc.wait()
        assert await placed == 0, call.errors()
    await settle(survivor, 15)
    rescued = {
        s.labels["outcome"]: s.value
        for m in survivor.metrics.registry.collect()
        if m.name == "ivr_calls_rescued"
        for s in m.samples
        if s.name == "ivr_calls_rescued_total"
    }
    return Killed(rescued, cap.datagrams(), killed_at)


async def rescued_record(url: str, outcome: str) -> str:
    """The one call, ended server_lost by server B with ``outcome``; its id. Nothing the dead
    server committed is missing, and the audit chain holds."""
    engine = create_engine(url)
    try:
        (record,) = await list_calls(engine, 10)
        assert record.server_id.endswith("/ivr-server-a") and record.end_reason == "server_lost"
        types = [e.type for e in await call_events_of(engine, record.id)]
        assert types[:2] == ["stasis_start", "answered"] and "decision" in types, types
        (ended,) = [e.payload for e in await call_events_of(engine, record.id) if e.type == "call_ended"]
        assert ended["outcome"] == outcome and ended["by"].endswith("/ivr-server-b"), ended
        audited = [e for e in await recent(engine, 200) if e.kind == "call_rescued"]
        assert [e.call_id for e in audited] == [record.id]
        assert (await verify_store(engine, None)).intact
        return record.id
    finally:
        await engine.dispose()


async def test_the_calls_of_a_killed_server_reach_the_agents_with_their_context_within_3_s(
    bank: str, tmp_path: Path
) -> None:
    steps = [Pause(prompt_ms("welcome")), Keys("3"), Pause(500)]  # a lost card; then the BYE is awaited
    call = SippCall(scenario(steps, tmp_path, bye_timeout_ms=30000), service="410", workdir=tmp_path,
                    timeout_s=90)  # fmt: skip
    async with two_servers(bank, tmp_path) as (url, proc, survivor):
        # in the middle of "Please say or key in the last four digits of the card."
        killed = await kill_during(call, proc, survivor, "flow.decision", 1.0, tmp_path)
        assert killed.rescued == {"continued": 1.0}, killed.rescued
        after = [
            t - killed.killed_at for t in heard_at(killed.datagrams, call.media_port) if t > killed.killed_at
        ]
        assert after, "the caller heard nothing after the kill"
        assert after[0] <= MAX_DEAD_AIR_S, f"{after[0]:.2f} s of dead air after the kill"
        print(f"server killed: next words {after[0]:.2f} s after the kill")  # -s shows it
        call_id = await rescued_record(url, "continued")

    # What the dialplan saw on the channel: [ivr-server-lost], then [ivr-agents] with the context.
    console = Path(sandbox("path").stdout.strip()).parent / "asterisk-console.log"
    seen = [line for line in console.read_text(errors="replace").splitlines() if call_id in line]
    assert any(f"ivr-server-lost session={call_id} flow=banking intent=lost_card" in s for s in seen), seen
    assert any("ivr-handoff" in s and "intent=lost_card status=server_lost" in s for s in seen), seen


async def test_a_caller_talking_with_an_agent_when_the_server_is_killed_keeps_talking(
    bank: str, tmp_path: Path
) -> None:
    """Bridged to the agent, the call needs no server: it stays up, the caller still hears the
    agent, and when the caller hangs up server B hangs up the agent (whose phone gets the BYE)."""
    voice = tmp_path / "agent.ul"
    piper_voice(AGENT_WORDS, voice)
    agent = SippAgent(agent_scenario("accept", tmp_path, key_after_ms=2500, voice=voice), tmp_path)
    steps = [Pause(prompt_ms("welcome")), Keys("0"), Pause(prompt_ms("to_agent") + 300 + 2500 + 1500 + 8000)]
    call = SippCall(scenario(steps, tmp_path, server_hangs_up=False), service="410", workdir=tmp_path,
                    timeout_s=90)  # fmt: skip
    await agent.start()
    async with two_servers(bank, tmp_path) as (url, proc, survivor):
        killed = await kill_during(call, proc, survivor, "flow.warm_transfer", 0.5, tmp_path)
        assert killed.rescued == {"with_agent": 1.0}, killed.rescued
        assert await agent.finish() == 0, agent.errors()  # B hung the agent up after the caller left
        heard = heard_at(killed.datagrams, call.media_port)
        after = [t - killed.killed_at for t in heard if t > killed.killed_at]
        assert after and after[0] <= 0.5, "the caller stopped hearing the agent when the server died"
        assert max(b - a for a, b in zip(after, after[1:], strict=False)) < MAX_DEAD_AIR_S
        await rescued_record(url, "with_agent")
