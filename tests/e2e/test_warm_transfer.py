"""Warm transfer in real calls: the sandbox Asterisk, SIPp as the caller and a second SIPp as the
agent's phone (answers and takes the call with key 1, declines with key 2, is busy, or rings
until given up). The caller holds to music, never in silence; the agent hears the summary; once
the agent accepts, the two are bridged; any other end puts the caller back in the flow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ivr_server.media.g711 import ulaw_decode
from tests.conftest import REPO, _migrated, fresh_database
from tests.e2e.test_banking_call import events_of, place, prompt_ms
from tests.e2e.test_voice_call import audio_of
from tests.support.audio import best_match, piper_voice
from tests.support.capture import Datagram
from tests.support.sipp import Keys, Pause, SippAgent, SippCall, agent_scenario, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

AGENT_WORDS = "Hello, this is Sam at Example Bank. I can see you called about your account."
RING_S = 5  # the flow's ring time in these tests (banking.yaml rings 15 s)


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> AsyncIterator[str]:
    """One store is enough for the ways an agent leg fails (the bridged call runs on both)."""
    async with fresh_database("sqlite", tmp_path) as url:
        yield await _migrated(url)


def flows_dir(tmp_path: Path) -> Path:
    """The shipped banking flow, ringing the agent for RING_S instead of 15 s."""
    text = (REPO / "flows" / "banking.yaml").read_text()
    assert "ring_s: 15" in text
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "banking.yaml").write_text(text.replace("ring_s: 15", f"ring_s: {RING_S}"))
    return folder


def silent_runs_s(datagrams: list[Datagram], port: int, start: float, end: float) -> float:
    """The longest stretch the caller heard nothing (no packet, or packets below -50 dBFS)
    between ``start`` and ``end`` (capture clock)."""
    frames = [
        (t, pcm) for t, pcm in audio_of([d for d in datagrams if d.dst_port == port]) if start <= t <= end
    ]
    longest, quiet_since = 0.0, start
    for t, pcm in frames:
        loud = np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 32768 * 10 ** (-50 / 20)
        if loud:
            longest = max(longest, t - quiet_since)
            quiet_since = t
    return max(longest, end - quiet_since)


def at(events: list, kind: str) -> datetime:  # type: ignore[type-arg]
    return next(e.at for e in events if e.type == kind)


async def test_the_agent_hears_the_summary_accepts_and_talks_with_the_caller(
    database_url: str, bank: str, tmp_path: Path
) -> None:
    voice = tmp_path / "agent.ul"
    agent_ms = int(piper_voice(AGENT_WORDS, voice) * 1000)
    agent = SippAgent(agent_scenario("accept", tmp_path, key_after_ms=2500, voice=voice), tmp_path)
    steps = [
        Pause(prompt_ms("welcome")),
        Keys("0"),  # an agent, from the keypad
        Pause(prompt_ms("to_agent") + 300 + 2500 + 1500 + 2 * agent_ms),  # ring, whisper, bridge, talk
    ]
    call = SippCall(scenario(steps, tmp_path, server_hangs_up=False), service="400", workdir=tmp_path)
    await agent.start()
    datagrams = await place(database_url, bank, call, tmp_path, flows_dir=flows_dir(tmp_path))
    assert await agent.finish() == 0, agent.errors()

    events, end_reason, turns = await events_of(database_url)
    kinds = [e.type for e in events]
    assert end_reason == "caller_hangup", (end_reason, turns, kinds)
    assert kinds.index("agent_ringing") < kinds.index("agent_answered") < kinds.index("agent_bridged"), kinds
    (bridged,) = [e.payload for e in events if e.type == "agent_bridged"]
    assert bridged["ms_after_accept"] <= 1500, bridged
    print(f"warm transfer: bridged {bridged['ms_after_accept']} ms after the agent's key")  # -s shows it
    (handoff,) = [e.payload for e in events if e.type == "handoff"]
    assert handoff["to"] == "agent:PJSIP/agent" and handoff["variables"]["IVR_INTENT"] == "agent"
    (ended,) = [e.payload for e in events if e.type == "flow_ended"]
    assert ended["outcome"] == "transfer" and ended["states"] == ["welcome", "agent"], ended

    # The caller heard the agent (their voice, through Asterisk's bridge), and never silence
    # for more than 3 s from the request to the agent's voice.
    caller = [d for d in datagrams if d.dst_port == call.media_port]
    heard = np.concatenate([pcm for _, pcm in audio_of(caller)])
    needle = ulaw_decode(np.frombuffer(voice.read_bytes()[-agent_ms * 8 :], np.uint8))[: agent_ms * 4]
    score, _ = best_match(heard, needle)
    assert score > 0.8, f"the caller did not hear the agent (score {score:.2f})"
    start = caller[0].time_s + steps[0].ms / 1000  # type: ignore[union-attr]
    end = at(events, "agent_bridged").timestamp() + 2.0  # the agent's first words
    quiet = silent_runs_s(datagrams, call.media_port, start, end)
    print(f"warm transfer: longest silence the caller heard before the agent: {quiet:.2f} s")
    assert quiet < 3.0


@pytest.mark.parametrize("mode", ["busy", "ring", "decline"])
async def test_a_failed_agent_leg_returns_the_caller_to_the_flow_with_the_context(
    mode: str, sqlite_url: str, bank: str, tmp_path: Path
) -> None:
    database_url = sqlite_url
    agent = SippAgent(agent_scenario(mode, tmp_path, key_after_ms=1500), tmp_path)
    waited_ms = {"busy": 1000, "ring": RING_S * 1000 + 1000, "decline": 1500 + 8000}[mode]
    steps = [
        Pause(prompt_ms("welcome")),
        Keys("0"),
        Pause(prompt_ms("to_agent") + waited_ms + prompt_ms("agents_busy")),
        Keys("9"),  # nothing else: goodbye, and the server hangs up
    ]
    call = SippCall(scenario(steps, tmp_path, bye_timeout_ms=30000), service="400", workdir=tmp_path)
    await agent.start()
    datagrams = await place(database_url, bank, call, tmp_path, flows_dir=flows_dir(tmp_path))
    await agent.finish()

    events, end_reason, turns = await events_of(database_url)
    kinds = [e.type for e in events]
    assert end_reason == "completed", (turns, kinds)
    (failed,) = [e.payload for e in events if e.type == "agent_failed"]
    assert failed["outcome"] == {"busy": "busy", "ring": "no_answer", "decline": "declined"}[mode], failed
    (ended,) = [e.payload for e in events if e.type == "flow_ended"]
    assert ended["states"] == ["welcome", "agent", "agents_busy", "goodbye"], ended
    assert "handoff" not in kinds  # nobody took the call
    # Back in the flow within 2 s: the agents-busy prompt starts that soon after the leg ended.
    engine_turns = [t for t in turns if t.startswith("system: All our agents are busy")]
    assert engine_turns, turns
    from ivr_server.store.database import create_engine
    from ivr_server.store.queries import list_calls, turns_of

    store = create_engine(database_url)
    try:
        (record,) = await list_calls(store, 5)
        busy_turn = next(t for t in await turns_of(store, record.id) if t.text.startswith("All our agents"))
    finally:
        await store.dispose()
    # a system turn is stored when it has been said: its audio began played_ms before
    began = busy_turn.at - timedelta(milliseconds=busy_turn.detail["played_ms"])
    back_s = (began - at(events, "agent_failed")).total_seconds()
    assert back_s <= 2.0, back_s
    print(f"warm transfer ({mode}): the flow spoke again {back_s:.2f} s after the agent leg ended")
    # No dead air from the request for an agent to the caller hearing the flow again.
    caller = [d for d in datagrams if d.dst_port == call.media_port]
    start = caller[0].time_s + steps[0].ms / 1000  # type: ignore[union-attr]
    quiet = silent_runs_s(datagrams, call.media_port, start, began.timestamp() + 1.0)
    print(f"warm transfer ({mode}): longest silence the caller heard: {quiet:.2f} s")
    assert quiet < 3.0
