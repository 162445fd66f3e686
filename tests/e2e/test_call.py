"""A real call: sandbox Asterisk, SIPp as the caller, the server in this process, a real store."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ivr_server.media.formats import ULAW
from ivr_server.media.g711 import ulaw_decode, ulaw_encode
from ivr_server.media.prompts import PromptLibrary
from ivr_server.media.rtp import RtpPacket
from ivr_server.store.database import create_engine
from ivr_server.store.queries import CallRecord, EventRecord, call_events_of, list_calls
from tests.conftest import REPO, running_server, server_settings, settle
from tests.support.audio import best_match, espeak_voice, voiced_seconds
from tests.support.capture import LoopbackCapture
from tests.support.sipp import Keys, Pause, SippCall, Speak, scenario
from tests.support.spoof import send_udp_from

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

ARI = httpx.BasicAuth("ivr", "ivr-sandbox")
SENTENCE = "Hello, I would like to check the balance of my account."


async def stored_call(url: str) -> tuple[CallRecord, list[EventRecord]]:
    engine = create_engine(url)
    try:
        calls = await list_calls(engine, 5)
        assert len(calls) == 1, f"expected one call in the store, found {len(calls)}"
        return calls[0], await call_events_of(engine, calls[0].id)
    finally:
        await engine.dispose()


def received_audio(capture: LoopbackCapture, port: int) -> np.ndarray:
    """The µ-law audio that reached the caller's media port, decoded, in sequence order."""
    packets = [RtpPacket.parse(d.payload) for d in capture.datagrams() if d.dst_port == port]
    audio = sorted((p for p in packets if p.payload_type == 0), key=lambda p: (p.ssrc, p.sequence))
    return ulaw_decode(b"".join(p.payload for p in audio))


async def call_and_listen(database_url: str, call: SippCall, tmp_path: Path) -> np.ndarray:
    """Place ``call`` to a fresh server while capturing the caller's side; returns what the
    caller heard, once the call is closed and stored."""
    async with running_server(server_settings(database_url)) as server:
        async with LoopbackCapture(tmp_path / "caller.pcap", f"udp dst port {call.media_port}") as cap:
            assert await call.run() == 0, call.errors()
        await settle(server)
    return received_audio(cap, call.media_port)


def as_heard(prompts: PromptLibrary, prompt_id: str) -> np.ndarray:
    """A prompt as it reaches a µ-law caller: 8 kHz, through G.711."""
    return ulaw_decode(ulaw_encode(prompts.audio(prompt_id, ULAW.sample_rate)))


async def test_digits_call_is_stored_and_read_back(database_url: str, tmp_path: Path) -> None:
    """The caller speaks, presses 1 2 3 #; the store has the call and every event in order, the
    speech time matches the sentence, and the caller hears "you entered one two three"."""
    voice = tmp_path / "voice.ul"
    length_s = espeak_voice(SENTENCE, voice)
    call = SippCall(
        scenario(
            [Pause(300), Speak(voice, int(length_s * 1000) + 500), Keys("123#", shipped=True)], tmp_path
        ),
        service="100",
        workdir=tmp_path,
    )
    heard = await call_and_listen(database_url, call, tmp_path)

    record, events = await stored_call(database_url)
    assert (record.caller_number, record.caller_name, record.dialed_number, record.flow) == (
        "+15550100",
        "Test Caller",
        "100",
        "digits",
    )
    assert record.end_reason == "completed"
    assert record.answered_at is not None and record.ended_at is not None
    assert record.started_at <= record.answered_at <= record.ended_at
    assert [e.seq for e in events] == list(range(1, len(events) + 1))

    kinds = [e.type for e in events]
    assert kinds[:3] == ["stasis_start", "answered", "media_started"]
    assert kinds[-2:] == ["hangup", "call_ended"]
    assert [e.payload["digit"] for e in events if e.type == "dtmf"] == ["1", "2", "3", "#"]
    (collected,) = [e.payload for e in events if e.type == "dtmf_collected"]
    assert collected == {"digits": "123", "reason": "terminator", "ignored": ""}
    readback = [e.payload for e in events if e.type == "prompt"][-1]
    assert readback["prompts"] == ["you_entered", "digit_1", "digit_2", "digit_3", "goodbye"]
    assert readback["completed"] is True

    (stats,) = [e.payload for e in events if e.type == "media_stats"]
    assert stats["rx"]["received"] >= int(length_s / 0.02) - 5
    assert stats["rx"]["lost"] == 0
    assert stats["tx"]["packets"] > 100
    (spoken,) = [e.payload for e in events if e.type == "caller_speech_total"]
    voiced_ms = voiced_seconds(voice) * 1000
    assert 0.6 * voiced_ms <= spoken["speech_ms"] <= 1.1 * voiced_ms, (spoken, voiced_ms)

    prompts = PromptLibrary(REPO / "prompts")
    offsets = []
    for prompt_id in ("you_entered", "digit_1", "digit_2", "digit_3"):
        score, offset = best_match(heard, as_heard(prompts, prompt_id))
        assert score > 0.9, f"{prompt_id} not found in what the caller heard (score {score:.2f})"
        offsets.append(offset)
    assert offsets == sorted(offsets), "the digits were read back out of order"


async def test_bad_input_is_counted_and_the_call_goes_on(database_url: str, tmp_path: Path) -> None:
    """Garbage RTP from a stranger, malformed packets from Asterisk's own address, audio packets
    of odd sizes (1 and 161 bytes: accepted and reframed; this keypad call has no VAD, so the
    reframing itself is shown by test_media_sockets.py and test_rtp.py), an event type
    the server does not know and one nested 1500 deep (relayed by Asterisk over the real events
    socket: too deep for Python's JSON parser) are each counted and logged; the call completes
    normally."""
    call = SippCall(scenario([Pause(2500), Keys("4421#")], tmp_path), service="100", workdir=tmp_path)
    async with running_server(server_settings(database_url)) as server:
        caller = asyncio.create_task(call.run())
        media = await wait_for_event(database_url, "media_started")
        port = media["local_port"]
        host, asterisk_port = media["asterisk_rtp"].rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            for _ in range(5):
                stranger.sendto(b"\x80\x00 not from asterisk", ("127.0.0.1", port))
        for garbage in (b"\x00\x01", b"\x40" + bytes(20), b"\x8f" + bytes(11)):
            send_udp_from((host, int(asterisk_port)), ("127.0.0.1", port), garbage)
        for seq, size in ((60_000, 1), (60_001, 161)):  # payload type 0 (PCMU), a stray SSRC
            odd = RtpPacket(0, seq, seq * 160, 0x5EED, b"\xff" * size).to_bytes()
            send_udp_from((host, int(asterisk_port)), ("127.0.0.1", port), odd)
        (channel,) = [s.channel.id for s in server.manager.sessions.values()]  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url="http://127.0.0.1:8088/ari", auth=ARI) as ari:
            resp = await ari.post(
                "/events/user/IvrTestProbe",
                params={"application": "ivr-server", "source": f"channel:{channel}"},
            )
            assert resp.status_code == 204, resp.text
            nested = "[" * 1500 + "]" * 1500
            resp = await ari.post(
                "/events/user/IvrTestDeep",
                params={"application": "ivr-server", "source": f"channel:{channel}"},
                content='{"variables": {"deep": ' + nested + "}}",
                headers={"Content-Type": "application/json"},
            )
            assert resp.status_code == 204, resp.text
        assert await caller == 0, call.errors()
        await settle(server)
        sample = server.metrics.registry.get_sample_value
        assert sample("ivr_rtp_packets_rejected_total", {"reason": "wrong_source"}) == 5
        assert sample("ivr_rtp_packets_rejected_total", {"reason": "malformed"}) == 3
        assert sample("ivr_ari_events_unknown_total", {"type": "ChannelUserevent"}) == 1
        assert sample("ivr_ari_events_malformed_total") == 1  # the deep one

    record, events = await stored_call(database_url)
    assert record.end_reason == "completed"
    (collected,) = [e.payload for e in events if e.type == "dtmf_collected"]
    assert collected["digits"] == "4421"
    (stats,) = [e.payload for e in events if e.type == "media_stats"]
    assert stats["rx"]["rejected"] == {"wrong_source": 5, "malformed": 3, "payload_type": 0}


async def test_unknown_flow_hands_the_caller_back_to_the_dialplan(database_url: str, tmp_path: Path) -> None:
    """A number routed to a flow the server lacks is not dead air: the caller goes back to the
    dialplan's fallback (which plays a notice and hangs up) and the store says why."""
    call = SippCall(scenario([], tmp_path), service="199", workdir=tmp_path)
    heard = await call_and_listen(database_url, call, tmp_path)
    record, events = await stored_call(database_url)
    assert record.end_reason == "unknown_flow"
    assert [e.payload for e in events if e.type == "handed_back"] == [{"status": "unknown_flow"}]
    assert len(heard) > 8000, "the fallback announcement was not heard"


async def test_echo_flow_returns_the_callers_voice(database_url: str, tmp_path: Path) -> None:
    """Extension 600 echoes: what the caller says comes back to the caller."""
    voice = tmp_path / "voice.ul"
    length_s = espeak_voice(SENTENCE, voice)
    prompts = PromptLibrary(REPO / "prompts")
    intro_ms = int(prompts.duration_s("echo_intro") * 1000)
    call = SippCall(
        scenario(
            [Pause(intro_ms + 500), Speak(voice, int(length_s * 1000) + 1000)],
            tmp_path,
            server_hangs_up=False,
        ),
        service="600",
        workdir=tmp_path,
    )
    heard = await call_and_listen(database_url, call, tmp_path)
    sent = ulaw_decode(voice.read_bytes())
    score, _ = best_match(heard, sent[: 8000 * 2])
    assert score > 0.9, f"the caller's own voice did not come back (score {score:.2f})"
    record, events = await stored_call(database_url)
    assert record.end_reason == "caller_hangup"
    (echo,) = [e.payload for e in events if e.type == "echo"]
    assert echo["frames"] >= int(length_s / 0.02) - 5


async def wait_for_event(url: str, kind: str, timeout_s: float = 15) -> dict[str, Any]:
    """The payload of the first ``kind`` event of the newest call, once it is in the store."""
    engine = create_engine(url)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                calls = await list_calls(engine, 1)
                if calls:
                    for event in await call_events_of(engine, calls[0].id):
                        if event.type == kind:
                            return event.payload
                await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


async def test_ten_simultaneous_callers_each_get_their_own_call(database_url: str, tmp_path: Path) -> None:
    """Ten callers at once: every call is set up (no bridging race), collects its own digits and
    completes, and no port or session is left behind."""
    call = SippCall(
        scenario([Pause(1000), Keys("90#")], tmp_path),
        service="100",
        workdir=tmp_path,
        calls=10,
        concurrent=10,
        rate_per_s=10,
    )
    async with running_server(server_settings(database_url)) as server:
        assert await call.run() == 0, call.errors()
        await settle(server)
        assert server.manager is not None and not server.manager.deps.ports.in_use
    engine = create_engine(database_url)
    try:
        records = await list_calls(engine, 20)
        assert len(records) == 10
        assert {r.end_reason for r in records} == {"completed"}
        assert len({r.channel_id for r in records}) == 10
        for record in records:
            events = await call_events_of(engine, record.id)
            (collected,) = [e.payload for e in events if e.type == "dtmf_collected"]
            assert collected["digits"] == "90"
    finally:
        await engine.dispose()


async def test_a_caller_who_hangs_up_at_once_leaves_nothing_behind(database_url: str, tmp_path: Path) -> None:
    """Callers hanging up right after the answer (while the server may still be setting up)
    are closed as caller_hangup promptly; no port, bridge or channel of ours is left."""
    call = SippCall(
        scenario([], tmp_path, server_hangs_up=False),
        service="100",
        workdir=tmp_path,
        calls=5,
        concurrent=5,
        rate_per_s=5,
    )
    async with running_server(server_settings(database_url)) as server:
        assert await call.run() == 0, call.errors()
        await settle(server, timeout_s=5)
        assert server.manager is not None and not server.manager.deps.ports.in_use
        async with httpx.AsyncClient(base_url="http://127.0.0.1:8088/ari", auth=ARI) as ari:
            app = (await ari.get("/applications/ivr-server")).json()
            bridges = [b for b in (await ari.get("/bridges")).json() if b["name"].startswith("ivr-server/")]
    assert app["channel_ids"] == [] and bridges == []
    engine = create_engine(database_url)
    try:
        records = await list_calls(engine, 10)
    finally:
        await engine.dispose()
    assert len(records) == 5 and {r.end_reason for r in records} == {"caller_hangup"}
    assert all(r.duration_s is not None and r.duration_s < 3 for r in records)
