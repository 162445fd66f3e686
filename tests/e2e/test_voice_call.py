"""Speech in a real call: the caller talks (Piper's voice, 8 kHz µ-law through SIPp and the
sandbox Asterisk), the server recognizes it, answers with TTS and stores both turns; a caller who
talks over a long prompt stops it within 100 ms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivr_server.media.audio import frame_dbfs
from ivr_server.media.g711 import Pcm, ulaw_decode
from ivr_server.media.rtp import RtpPacket
from ivr_server.speech.asr.base import feed_all
from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine
from ivr_server.store.database import create_engine
from ivr_server.store.queries import EventRecord, TurnRecord, call_events_of, list_calls, turns_of
from tests.conftest import REPO, running_server, server_settings, settle
from tests.support.audio import best_match, piper_voice
from tests.support.capture import Datagram, LoopbackCapture
from tests.support.sipp import Keys, Pause, SippCall, Speak, scenario

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("asterisk")]

VOICE_EXTEN = "300"
LOUD_DBFS = -45.0


def prompt_seconds(prompt_id: str) -> float:
    import wave

    with wave.open(str(REPO / "prompts" / f"{prompt_id}.wav")) as w:
        return w.getnframes() / w.getframerate()


def audio_of(datagrams: list[Datagram]) -> list[tuple[float, Pcm]]:
    """(capture time, decoded frame) of each µ-law RTP packet, in arrival order."""
    out = []
    for d in datagrams:
        packet = RtpPacket.parse(d.payload)
        if packet.payload_type == 0:
            out.append((d.time_s, ulaw_decode(packet.payload)))
    return out


def transcribe(pcm: Pcm, phrases: list[str] | None = None) -> str:
    """What PocketSphinx hears in ``pcm``, with half a second of silence after it (the call
    ended with the last word: without the pause its end is not decoded)."""
    recognizer = PocketSphinxEngine().recognizer(8000, phrases)
    feed_all(recognizer, np.concatenate([pcm, np.zeros(4000, np.int16)]), 8000)
    return recognizer.finish().text


async def stored(url: str) -> tuple[list[TurnRecord], list[EventRecord], str | None]:
    engine = create_engine(url)
    try:
        (call,) = await list_calls(engine, 5)
        return await turns_of(engine, call.id), await call_events_of(engine, call.id), call.end_reason
    finally:
        await engine.dispose()


async def place(database_url: str, call: SippCall, tmp_path: Path) -> list[Datagram]:
    settings = server_settings(database_url)
    async with running_server(settings) as server:
        async with LoopbackCapture(tmp_path / "caller.pcap", f"udp port {call.media_port}") as cap:
            assert await call.run() == 0, call.errors()
        await settle(server, 30)
    return cap.datagrams()


async def test_the_caller_is_heard_and_answered_by_voice(database_url: str, tmp_path: Path) -> None:
    said = "I want to speak to an agent."
    voice = tmp_path / "voice.ul"
    length_s = piper_voice(said, voice)
    wait_ms = int((prompt_seconds("voice_greeting") + 1.5) * 1000)
    call = SippCall(
        scenario([Pause(wait_ms), Speak(voice, int(length_s * 1000) + 300)], tmp_path, bye_timeout_ms=30000),
        service=VOICE_EXTEN,
        workdir=tmp_path,
    )
    datagrams = await place(database_url, call, tmp_path)

    turns, events, end_reason = await stored(database_url)
    assert end_reason == "completed"
    roles = [(t.role, t.outcome) for t in turns]
    assert roles == [("system", "completed"), ("caller", "speech"), ("system", "completed")], roles
    greeting, caller, reply = turns
    assert caller.text == "i want to speak to an agent", caller
    assert caller.engine == "pocketsphinx" and caller.confidence is not None
    assert caller.start_ms is not None and caller.end_ms is not None
    assert 0.6 * length_s * 1000 <= caller.end_ms - caller.start_ms <= 1.3 * length_s * 1000
    assert caller.latency_ms is not None and 0 < caller.latency_ms < 1500, caller.latency_ms
    assert greeting.cached is True, "the greeting was not pre-rendered at start-up"
    assert reply.text.startswith("You said: i want to speak to an agent.") and reply.engine == "piper"

    # What the caller heard after they spoke: the reply, with the recognized words in it.
    sent = [t for t, _ in audio_of([d for d in datagrams if d.src_port == call.media_port])]
    heard = audio_of([d for d in datagrams if d.dst_port == call.media_port])
    after = np.concatenate([pcm for t, pcm in heard if t > sent[-1]])
    words = transcribe(after).split()
    for word in ("speak", "agent"):
        assert word in words, f"{word!r} not in what the caller heard: {' '.join(words)}"
    # ...and it is exactly the synthesized reply, to its last syllable.
    from ivr_server.media.g711 import ulaw_encode
    from ivr_server.speech.tts.engines import load_tts_engine
    from ivr_server.speech.tts.synthesizer import Synthesizer

    synth = Synthesizer(load_tts_engine("piper"))
    try:
        goodbye, _ = await synth.render("Goodbye.", 8000)  # the last piece the reply streams
    finally:
        synth.close()
    score, offset = best_match(after, ulaw_decode(ulaw_encode(goodbye)))
    assert score > 0.9, f"the end of the reply did not reach the caller (score {score:.2f})"


async def test_speech_over_a_long_prompt_stops_it_within_100_ms(database_url: str, tmp_path: Path) -> None:
    voice = tmp_path / "voice.ul"
    length_s = piper_voice("I would like to check my account balance please.", voice)
    call = SippCall(
        scenario([Pause(3000), Speak(voice, int(length_s * 1000) + 300)], tmp_path, bye_timeout_ms=30000),
        service=VOICE_EXTEN,
        workdir=tmp_path,
    )
    datagrams = await place(database_url, call, tmp_path)

    sent = audio_of([d for d in datagrams if d.src_port == call.media_port])
    onset = next(t for t, pcm in sent if frame_dbfs(pcm) > LOUD_DBFS)
    heard = audio_of([d for d in datagrams if d.dst_port == call.media_port])
    before = [frame_dbfs(pcm) for t, pcm in heard if onset - 0.3 <= t < onset]
    assert max(before) > LOUD_DBFS, "the prompt was not playing when the caller spoke"
    # The prompt stopped at the last loud packet before a long quiet stretch.
    loud = [t for t, pcm in heard if t >= onset and frame_dbfs(pcm) > LOUD_DBFS]
    stop = onset
    for t in loud:
        if t - stop > 0.5:
            break
        stop = t
    stop += 0.02  # that packet's audio lasts a frame
    assert stop - onset <= 0.100, f"playback went on {1000 * (stop - onset):.0f} ms after speech began"

    turns, events, _ = await stored(database_url)
    assert (turns[0].role, turns[0].outcome) == ("system", "barge_in")
    assert turns[1].role == "caller" and turns[1].detail["barge_in"] is True
    (barge,) = [e.payload for e in events if e.type == "barge_in"]
    assert barge["after_speech_ms"] <= 100 and barge["confirmed_at_ms"] >= barge["stopped_at_ms"], barge


async def test_a_recognizer_that_dies_mid_turn_falls_back_to_the_keypad(
    database_url: str, tmp_path: Path
) -> None:
    """The ASR workers are killed while the caller speaks: the turn fails, the log and the store say
    so, the caller is offered the keypad at once (no dead air) and their digits are read back."""
    import asyncio
    import os
    import signal

    voice = tmp_path / "voice.ul"
    length_s = piper_voice("I would like to check my account balance please.", voice)
    call = SippCall(
        scenario(
            [Pause(2000), Speak(voice, int(length_s * 1000) + 9000), Keys("123#")],
            tmp_path,
            bye_timeout_ms=30000,
        ),
        service=VOICE_EXTEN,
        workdir=tmp_path,
    )
    async with running_server(server_settings(database_url)) as server:
        async with LoopbackCapture(tmp_path / "caller.pcap", f"udp port {call.media_port}") as cap:
            caller = asyncio.create_task(call.run())
            assert server.manager is not None
            async with asyncio.timeout(20):  # until the caller is mid-utterance
                while not any(s.voice and s.voice._turn for s in server.manager.sessions.values()):
                    await asyncio.sleep(0.02)
            asr = server.voice.services.asr if server.voice else None
            assert asr is not None
            for worker in asr._processes:
                os.kill(worker._process.pid or 0, signal.SIGKILL)
            assert await caller == 0, call.errors()
        await settle(server, 30)

    turns, events, end_reason = await stored(database_url)
    assert end_reason == "completed"
    caller_turn = next(t for t in turns if t.role == "caller")
    assert caller_turn.outcome == "failed" and "worker" in caller_turn.detail["error"]
    (fallback,) = [e.payload for e in events if e.type == "fallback"]
    assert fallback["to"] == "dtmf" and fallback["outcome"] == "failed"
    (collected,) = [e.payload for e in events if e.type == "dtmf_collected"]
    assert collected["digits"] == "123"
    assert [t.text for t in turns if t.role == "system"][-1].startswith("Let's use the keypad")

    # No dead air: from the end of the caller's speech to the keypad offer.
    sent = [
        t
        for t, pcm in audio_of([d for d in cap.datagrams() if d.src_port == call.media_port])
        if frame_dbfs(pcm) > LOUD_DBFS
    ]
    heard = [
        t
        for t, pcm in audio_of([d for d in cap.datagrams() if d.dst_port == call.media_port])
        if frame_dbfs(pcm) > LOUD_DBFS
    ]
    speech_end = max(t for t in sent if t < sent[0] + length_s + 0.5)
    offer = min(t for t in heard if t > speech_end)
    assert offer - speech_end < 4.0, f"{offer - speech_end:.1f} s of silence after the caller spoke"
