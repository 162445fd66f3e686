"""Turn-taking on one call without Asterisk: a real RTP sender on loopback plays Piper prompts
while the caller's audio is fed frame by frame in real time through the real VAD."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from ivr_server.media.clock import MediaClock
from ivr_server.media.formats import ULAW
from ivr_server.media.g711 import Pcm, ulaw_decode, ulaw_encode
from ivr_server.media.sender import Playback, RtpSender
from ivr_server.observability.metrics import Metrics
from ivr_server.speech.tts.engines import load_tts_engine
from ivr_server.speech.tts.synthesizer import Synthesizer
from ivr_server.speech.vad.endpointer import EndpointSettings
from ivr_server.speech.voice import Said, VoiceIO, VoiceServices
from ivr_server.store.writer import Turn
from tests.support.audio import piper

PROMPT = "Thank you for calling. Please listen carefully, as our menu options have changed recently."


@dataclass
class Call:
    voice: VoiceIO
    sender: RtpSender
    turns: list[Turn] = field(default_factory=list)
    events: list[tuple[str, dict[str, object]]] = field(default_factory=list)


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    loop = asyncio.get_running_loop()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    clock = MediaClock()
    sender = RtpSender(ULAW, transport, sink.getsockname(), clock, Metrics())  # type: ignore[arg-type]
    sender.start()
    synth = Synthesizer(load_tts_engine("piper"))
    services = VoiceServices(asr=None, synth=synth, vad="auto", endpoint=EndpointSettings(end_silence_ms=300))
    turns: list[Turn] = []
    events: list[tuple[str, dict[str, object]]] = []
    voice = VoiceIO(
        services, 8000, sender, "call-1", lambda kind, **kw: events.append((kind, kw)), turns.append
    )
    try:
        yield Call(voice, sender, turns, events)
    finally:
        sender.close()
        transport.close()
        sink.close()
        synth.close()


async def caller(voice: VoiceIO, pcm: Pcm, lead_s: float, total_s: float) -> None:
    """The caller's side of the line: ``lead_s`` of silence, ``pcm``, then silence, in real time."""
    audio = np.concatenate([np.zeros(int(lead_s * 8000), np.int16), pcm])
    audio = np.concatenate([audio, np.zeros(max(0, int(total_s * 8000) - len(audio)), np.int16)])
    for i in range(0, len(audio) - 159, 160):
        voice.on_audio(audio[i : i + 160])
        await asyncio.sleep(0.02)


async def test_a_short_sound_over_a_prompt_that_wants_more_speech_does_not_stop_it(call: Call) -> None:
    """ "Hm." (a few hundred ms) over a prompt that needs 800 ms of speech to give way: the prompt
    pauses at the energy rise, resumes when the speech ends short, and plays to the end."""
    short = piper("Hm.", 8000)
    feeding = asyncio.create_task(caller(call.voice, short, 1.0, 9.0))
    said: Said = await asyncio.wait_for(call.voice.say(PROMPT, min_speech_ms=800), 30)
    feeding.cancel()
    assert said.outcome == "completed", said
    assert [t.role for t in call.turns] == ["system"] and call.turns[0].outcome == "completed"
    assert not [e for e in call.events if e[0] == "barge_in"]
    assert not call.sender.paused


async def test_real_speech_over_a_prompt_stops_it(call: Call) -> None:
    speech = piper("I would like to speak to someone about my account.", 8000)
    feeding = asyncio.create_task(caller(call.voice, speech, 1.0, 6.0))
    said = await asyncio.wait_for(call.voice.say(PROMPT), 30)
    assert said.outcome == "barge_in" and said.played_ms < 2000, said
    ((kind, barge),) = [e for e in call.events if e[0] == "barge_in"]
    assert barge["stopped_at_ms"] <= barge["confirmed_at_ms"]  # type: ignore[operator]
    heard = await asyncio.wait_for(call.voice.listen(), 15)
    assert heard.outcome == "unavailable"  # no recognizer in this harness: the flow goes to the keypad
    await feeding


async def test_a_caller_who_starts_as_the_prompts_last_frame_goes_out_does_not_silence_the_line(
    call: Call,
) -> None:
    """The caller's first syllable arrives in the tick that sent the prompt's last frame, before
    say() has returned: the quick onset pauses the player with nothing left of the prompt. The
    next prompt must still play (bench-ab: a goodbye never sent, 13 s of dead air)."""
    speech = piper("No thanks, that's all.", 8000)
    onset = int(np.argmax(np.abs(speech) > 2000))
    syllable = [speech[onset + i * 160 : onset + (i + 1) * 160] for i in range(10)]
    play = call.sender.play
    spoke: list[bool] = []

    def play_then_speak(pcm: Pcm, on_start: Callable[[float], None] | None = None) -> Playback:
        playback = play(pcm, on_start)

        def speak(_: object) -> None:  # runs before say()'s own wake-up: registered first
            if not call.sender.playing and not spoke:  # the prompt's last piece is out
                spoke.append(True)
                for frame in syllable:
                    call.voice.on_audio(frame)

        playback.done.add_done_callback(speak)
        return playback

    line = asyncio.create_task(caller(call.voice, np.zeros(0, np.int16), 0.0, 15.0))  # the line's silence
    call.sender.play = play_then_speak  # type: ignore[method-assign]
    first = await asyncio.wait_for(call.voice.say("One moment please.", min_speech_ms=800), 30)
    call.sender.play = play  # type: ignore[method-assign]
    assert first.outcome == "completed" and spoke, first
    second = await asyncio.wait_for(call.voice.say("Goodbye."), 10)
    line.cancel()
    assert second.outcome == "completed" and second.played_ms > 0, second
    assert not call.sender.paused


async def test_a_prompt_synthesized_while_it_plays_reaches_the_line_without_a_gap() -> None:
    """The first sentence leaves in two (its head, then the rest). What the line carries is the
    whole rendering, sample for sample: no silence where the head's last frame was padded."""
    loop = asyncio.get_running_loop()
    payloads: list[bytes] = []

    class Line(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            payloads.append(data[12:])

    line, _ = await loop.create_datagram_endpoint(Line, local_addr=("127.0.0.1", 0))
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    peer = line.get_extra_info("sockname")
    sender = RtpSender(ULAW, transport, peer, MediaClock(), Metrics())  # type: ignore[arg-type]
    sender.start()
    synth = Synthesizer(load_tts_engine("piper"))  # no cache: every prompt is synthesized as it plays
    text = "The card ending 4 4 2 1 is blocked. A new card will arrive in five to seven days."
    try:
        services = VoiceServices(asr=None, synth=synth, vad="auto", endpoint=EndpointSettings())
        voice = VoiceIO(services, 8000, sender, "call-1", lambda kind, **kw: None, lambda turn: None)
        said = await asyncio.wait_for(voice.say(text, barge_in=False), 30)
        await asyncio.sleep(0.1)  # the last packets on their way
        assert said.outcome == "completed" and not said.cached, said
        expected, _ = await synth.render(text, 8000)
    finally:
        sender.close()
        transport.close()
        line.close()
        synth.close()
    heard = ulaw_decode(b"".join(payloads))
    # Only the last sentence's end is padded to a whole frame.
    assert len(heard) - len(expected) < 160 * 2, (len(heard), len(expected))
    np.testing.assert_array_equal(heard[: len(expected)], ulaw_decode(ulaw_encode(expected)))
