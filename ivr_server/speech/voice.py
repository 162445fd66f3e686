"""Speaking and listening on one call: streaming TTS out, VAD + ASR in, barge-in between.

Every received frame comes through ``on_audio`` (on the media clock, in the event loop). While
the call is *armed* (listening, or speaking a prompt the caller may interrupt) each frame goes
through the VAD and the endpointer; when speech starts, a recognizer stream opens and gets the
last few hundred ms of audio (the pre-roll) so the first syllable is not lost. Speech over an
interruptible prompt stops it at once (``player.stop()``: the next clock tick sends nothing).

Turns are recorded in the store: a caller turn is written when the reply's first packet leaves
(that is when its end-of-speech -> first-reply-audio latency is known), or when the next turn
starts without a reply.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import structlog

from ivr_server.errors import AsrError, SpeechError
from ivr_server.media.formats import FRAME_MS
from ivr_server.media.g711 import Pcm
from ivr_server.media.sender import Playback
from ivr_server.observability.tracing import current_context, span
from ivr_server.speech.asr.base import AsrResult, LanguageModel
from ivr_server.speech.asr.service import AsrService, AsrStream
from ivr_server.speech.tts.base import SpeechChunk
from ivr_server.speech.tts.synthesizer import Synthesizer
from ivr_server.speech.vad.detectors import load_detector
from ivr_server.speech.vad.endpointer import Endpointer, EndpointSettings, NoInput, SpeechEnded, SpeechStarted
from ivr_server.speech.vad.energy import EnergyDetector
from ivr_server.store.writer import Turn

log = structlog.get_logger(__name__)
SECURE_TEXT = "[secure]"  # what is kept of a secure answer

PREROLL_MS = 300  # audio kept from before the detected onset, for the recognizer
# How much of it precedes the onset the VAD reports: that onset lags a weak first sound ("f" of
# "forget it") by 100 ms and more (benchmarks/vad.md, start p90); less clipped the first syllable
# in real calls ("get that", "and full that's" for "cancel that": benchmarks/ab-repairs.md).
LEAD_IN_MS = 250
GAP_FILL_S = 0.06  # no packet for this long: the caller's time goes on as silence
FRAME_S = 0.02
# Barge-in in two steps, because the VAD that tells speech from noise needs ~40-80 ms to be sure
# (benchmarks/vad.md) and the caller must not talk over the prompt longer than 100 ms: a rise in
# energy pauses the prompt at once; the VAD then confirms (stop) or, within CONFIRM_MS, does
# not (the prompt resumes where it paused).
QUICK_ONSET_PROBABILITY = 0.5
CONFIRM_MS = 300


class Player(Protocol):
    def play(self, pcm: Pcm, on_start: Callable[[float], None] | None = None) -> Playback: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class VoiceServices:
    """Shared by every call: the engines and the turn-taking settings."""

    asr: AsrService | None
    synth: Synthesizer | None
    vad: str
    endpoint: EndpointSettings
    barge_in_min_speech_ms: int = 40
    asr_final_timeout_s: float = 3.0
    tts_first_audio_timeout_s: float = 2.0


@dataclass(frozen=True)
class Heard:
    """The outcome of ``listen``: speech (with the recognizer's words), or why there was none."""

    outcome: str  # speech | no_input | dtmf | failed | unavailable
    text: str = ""
    confidence: float | None = None
    start_ms: int | None = None  # call audio offsets
    end_ms: int | None = None
    barge_in: bool = False
    result: AsrResult | None = None
    reason: str = ""  # for failed/unavailable: what went wrong
    energy_dbfs: float | None = None  # the caller's mean level while speaking


@dataclass(frozen=True)
class Said:
    outcome: str  # completed | barge_in | dtmf | failed
    engine: str | None
    cached: bool
    first_audio_ms: int | None  # say() called -> first packet sent
    played_ms: int


@dataclass
class _Speaking:
    barge_in: bool
    min_speech_ms: int
    stopped_by: str | None = None
    paused_at_ms: int | None = None  # energy onset paused the prompt here, awaiting the VAD


@dataclass
class _CallerTurn:
    started: SpeechStarted
    base_ms: int  # endpointer position 0 in call audio ms
    stream: AsrStream | None
    barge_in: bool
    done: asyncio.Future[Heard] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    ended: SpeechEnded | None = None
    power: float = 0.0  # sum of the frames' power (relative to full scale) while the caller spoke
    frames: int = 0  # frames that came with their level


class VoiceIO:
    def __init__(
        self,
        services: VoiceServices,
        sample_rate: int,
        player: Player,
        call_id: str,
        record: Callable[..., None],
        submit_turn: Callable[[Turn], None],
        now: Callable[[], float] = time.monotonic,
        log_context: dict[str, str] | None = None,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        # Audio arrives on the media clock, outside the call's task: the call's log fields
        # travel with this logger, not with contextvars.
        self._log = log.bind(**(log_context or {"call_id": call_id}))
        self.services = services
        self.rate = sample_rate
        self.position_ms = 0  # caller audio received so far
        self._player = player
        self._call_id = call_id
        self._record = record
        self._submit = submit_turn
        self._now = now
        # timings for the metrics (seconds), and +1/-1 as recognition streams open and close
        self._observe = observe or (lambda _name, _value: None)
        self._trace = current_context()  # the call's span (None when tracing is off)
        self._detector = load_detector(services.vad, sample_rate)
        self.secure = False  # a secure slot is being collected: its words are neither logged nor stored
        self._quick = EnergyDetector(sample_rate)  # no lag: pauses a prompt at the first syllable
        self._preroll: deque[Pcm] = deque(maxlen=max(1, PREROLL_MS // 20))
        self._ep: Endpointer | None = None
        self._ep_base_ms = 0
        self._waiting: asyncio.Future[Heard] | None = None  # listen() waiting for a turn to start
        self._turn: _CallerTurn | None = None
        self._speaking: _Speaking | None = None
        self._phrases: tuple[str, ...] | None = None
        self._model: LanguageModel | None = None  # what the next stream is recognized with
        self._barge_at_ms: int | None = None
        self._seq = 0
        self._first_packet_at: float | None = None
        self._unreplied: tuple[Turn, float | None] | None = None  # caller turn, end-of-speech time
        self.heard: Callable[[Turn], None] | None = None  # a caller's turn at once (the live console)
        self._audio_at = now()  # when the caller's audio timeline last advanced
        self._silence = np.zeros(sample_rate * 20 // 1000, dtype=np.int16)

    # --- audio in ---------------------------------------------------------------------------
    def on_clock(self, now: float) -> None:
        """Every media tick: packets that stopped coming (silence suppression, a pause in a
        stream) count as silence once they are ``GAP_FILL_S`` late, so turns still end and
        no-input timers still run; a jittery packet inside that allowance is not a gap."""
        while now - self._audio_at > GAP_FILL_S:
            self._audio_at += FRAME_S
            self._frame(self._silence)

    def on_audio(self, pcm: Pcm, level_dbfs: float | None = None) -> None:
        """A frame of the caller's audio; ``level_dbfs``: its level, when the call has measured it
        already (the caller's turn is then heard with its mean level)."""
        self._audio_at = max(self._audio_at, self._now())
        self._frame(pcm, level_dbfs)

    def _frame(self, pcm: Pcm, level_dbfs: float | None = None) -> None:
        frame_ms = len(pcm) * 1000 // self.rate
        self.position_ms += frame_ms
        self._preroll.append(pcm)
        if self._ep is None:
            return
        turn = self._turn
        if turn is not None and turn.ended is None:
            if level_dbfs is not None:
                turn.power += 10 ** (level_dbfs / 10)
                turn.frames += 1
            if turn.stream is not None:
                turn.stream.feed(pcm)
        probability = self._detector.probability(pcm)
        if self._speaking is not None:
            self._quick_onset(self._quick.probability(pcm))
        for event in self._ep.feed(probability, frame_ms):
            if isinstance(event, SpeechStarted):
                self._speech_started(event)
            elif isinstance(event, SpeechEnded):
                self._speech_ended(event)
            elif isinstance(event, NoInput):
                self._no_input(event)
        if (
            self._barge_at_ms is not None
            and self._ep is not None
            and self._ep.position_ms >= self._barge_at_ms
        ):
            self._barge_at_ms = None
            self._barge_in(probability)

    def _quick_onset(self, energy_probability: float) -> None:
        speaking = self._speaking
        if speaking is None or not speaking.barge_in or speaking.stopped_by is not None:
            return
        if speaking.paused_at_ms is None:
            if energy_probability >= QUICK_ONSET_PROBABILITY:
                speaking.paused_at_ms = self.position_ms
                self._player.pause()
        elif self._turn is None and self.position_ms - speaking.paused_at_ms >= CONFIRM_MS:
            self._log.info("voice.barge_in_rejected", paused_ms=self.position_ms - speaking.paused_at_ms)
            speaking.paused_at_ms = None
            self._player.resume()

    def on_dtmf(self, digit: str) -> None:
        """A key ends an interruptible prompt and a listen that heard no speech yet."""
        if self._speaking is not None and self._speaking.barge_in and self._speaking.stopped_by is None:
            self._speaking.stopped_by = "dtmf"
            self._player.stop()
        if self._waiting is not None and not self._waiting.done() and self._turn is None:
            self._waiting.set_result(Heard("dtmf", reason=f"key {digit}"))
            self._disarm()

    def _arm(self, settings: EndpointSettings) -> None:
        self._ep = Endpointer(settings)
        self._ep_base_ms = self.position_ms

    def _arm_for_prompt(self) -> None:
        """Listening for barge-in while a prompt plays: no no-input timer."""
        s = self.services.endpoint
        self._arm(replace(s, no_input_ms=0))

    def _disarm(self) -> None:
        self._ep = None
        self._barge_at_ms = None

    def _speech_started(self, event: SpeechStarted) -> None:
        speaking = self._speaking
        barge = speaking is not None and speaking.barge_in and speaking.stopped_by is None
        stream = self._open_stream(event)
        self._turn = _CallerTurn(event, self._ep_base_ms, stream, barge)
        self._log.info(
            "voice.speech_started",
            at_ms=self._ep_base_ms + event.start_ms,
            detect_delay_ms=event.detected_ms - event.start_ms,
            probability=round(event.probability, 3),
            during_prompt=speaking is not None,
        )
        if barge and speaking is not None:
            heard_ms = event.detected_ms - event.start_ms
            if heard_ms >= speaking.min_speech_ms:
                self._barge_in(event.probability)
            else:  # this prompt wants more speech before it gives way
                self._barge_at_ms = event.start_ms + speaking.min_speech_ms

    def _open_stream(self, event: SpeechStarted) -> AsrStream | None:
        asr = self.services.asr
        if asr is None:
            return None
        try:
            stream = asr.open(self.rate, self._phrases, model=self._model)
        except AsrError as err:
            self._log.error("asr.fallback", error=str(err), to="dtmf")
            return None
        self._observe("asr_streams", 1)
        frames = (self._ep.position_ms - event.start_ms + LEAD_IN_MS) // 20 if self._ep else 1
        for pcm in list(self._preroll)[-max(1, frames) :]:
            stream.feed(pcm)
        return stream

    def _barge_in(self, probability: float) -> None:
        speaking, turn = self._speaking, self._turn
        if speaking is None or speaking.stopped_by is not None or turn is None or turn.ended is not None:
            return
        speaking.stopped_by = "barge_in"
        self._player.stop()
        start_ms = self._ep_base_ms + turn.started.start_ms
        # Audio stopped at the energy pause, if there was one; the VAD's own onset lags it.
        stopped = speaking.paused_at_ms if speaking.paused_at_ms is not None else self.position_ms
        detail = {
            "speech_start_ms": start_ms,
            "paused_at_ms": speaking.paused_at_ms,
            "confirmed_at_ms": self.position_ms,
            "stopped_at_ms": stopped,
            "after_speech_ms": max(0, stopped - start_ms),
            "probability": round(probability, 3),
            "partial": turn.stream.partial if turn.stream else "",
        }
        self._log.info("voice.barge_in", **detail)
        self._record("barge_in", **detail)

    def _speech_ended(self, event: SpeechEnded) -> None:
        turn = self._turn
        self._disarm()
        if turn is None:
            return
        speaking = self._speaking
        if speaking is not None and speaking.stopped_by is None:
            # Over a prompt that is still playing, and too short for its min_speech_ms (a cough,
            # "uh-huh"): not a turn. The prompt goes on, and stays open to a real barge-in.
            self._log.info("voice.barge_in_rejected", speech_ms=event.end_ms - event.start_ms)
            self._drop_stream(turn)
            self._turn = None
            if speaking.paused_at_ms is not None:
                speaking.paused_at_ms = None
                self._player.resume()
            self._arm_for_prompt()
            return
        turn.ended = event
        # The speech ended (detected_ms - end_ms) ago: that moment is what reply latency counts from.
        ended_at = self._now() - (event.detected_ms - event.end_ms) / 1000
        asyncio.get_running_loop().create_task(self._finish_turn(turn, event, ended_at))

    async def _finish_turn(self, turn: _CallerTurn, event: SpeechEnded, ended_at: float) -> None:
        # Started by the media clock, outside the call's task: parented on the call's trace.
        with span("recognition", parent=self._trace, barge_in=turn.barge_in):
            await self._recognized(turn, event, ended_at)

    async def _recognized(self, turn: _CallerTurn, event: SpeechEnded, ended_at: float) -> None:
        start_ms, end_ms = turn.base_ms + event.start_ms, turn.base_ms + event.end_ms
        result: AsrResult | None = None
        failure = ""
        asr_ms: int | None = None
        if turn.stream is None:
            failure = "no recognizer"
        else:
            try:
                asked = self._now()
                result = await turn.stream.finish(self.services.asr_final_timeout_s)
                asr_ms = round((self._now() - asked) * 1000)
                self._observe("asr_final_latency", asr_ms / 1000)
            except AsrError as err:
                failure = str(err)
                self._log.error("asr.fallback", error=failure, to="dtmf")
            finally:
                self._observe("asr_streams", -1)
        level = 10 * math.log10(turn.power / turn.frames + 1e-12) if turn.frames else None
        heard = (
            Heard("speech", result.text, result.confidence, start_ms, end_ms, turn.barge_in, result,
                  energy_dbfs=level)
            if result is not None
            else Heard("failed", "", None, start_ms, end_ms, turn.barge_in, None, failure, energy_dbfs=level)
        )  # fmt: skip
        self._log.info(
            "voice.end_of_turn",
            reason=event.reason,
            words=SECURE_TEXT if self.secure and heard.text else heard.text,
            confidence=heard.confidence,
            speech_ms=end_ms - start_ms,
            detect_delay_ms=event.detected_ms - event.end_ms,
            silence_probability=round(event.probability, 3),
            barge_in=turn.barge_in,
            outcome=heard.outcome,
            final_result_ms=asr_ms,
        )
        self._hold_caller_turn(heard, event.reason, ended_at)
        if not turn.done.done():
            turn.done.set_result(heard)
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(heard)

    def _no_input(self, event: NoInput) -> None:
        self._disarm()
        self._log.info(
            "voice.no_input", after_ms=event.at_ms, peak_probability=round(event.peak_probability, 3)
        )
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(Heard("no_input", reason=f"no speech in {event.at_ms} ms"))

    # --- listening --------------------------------------------------------------------------
    async def listen(
        self,
        phrases: Sequence[str] | None = None,
        *,
        model: LanguageModel | None = None,
        no_input_ms: int | None = None,
        end_silence_ms: int | None = None,
        max_ms: int | None = None,
    ) -> Heard:
        """The caller's next turn (or the one a barge-in already started), recognized with
        ``phrases`` or ``model`` (a flow's resources for this question) or the engine's own."""
        self._flush_unreplied()
        if self.services.asr is None:
            return Heard("unavailable", reason="no speech recognizer loaded")
        turn = self._turn
        if turn is not None:  # a barge-in started it: it stays current until it has ended
            try:
                return await self._guarded(turn.done, self.services.endpoint.max_utterance_ms)
            finally:
                self._turn = None
        s = self.services.endpoint
        settings = EndpointSettings(
            threshold=s.threshold,
            stay_threshold=s.stay_threshold,
            min_speech_ms=s.min_speech_ms,
            end_silence_ms=end_silence_ms or s.end_silence_ms,
            max_utterance_ms=max_ms or s.max_utterance_ms,
            no_input_ms=s.no_input_ms if no_input_ms is None else no_input_ms,
        )
        self._phrases = tuple(phrases) if phrases else None
        self._model = model
        self._arm(settings)
        self._waiting = asyncio.get_running_loop().create_future()
        try:
            heard = await self._guarded(self._waiting, settings.no_input_ms + settings.max_utterance_ms)
        finally:
            self._waiting = None
        self._turn = None
        return heard

    async def _guarded(self, future: asyncio.Future[Heard], budget_ms: int) -> Heard:
        """Frames drive the endpointer; if they stop coming (media lost) this still returns."""
        limit = budget_ms / 1000 + self.services.asr_final_timeout_s + 2.0
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(future)
        except TimeoutError:
            self._disarm()
            self._log.error("voice.listen_stalled", limit_s=limit)
            return Heard("failed", reason=f"no audio for {limit:.0f}s")

    # --- speaking ---------------------------------------------------------------------------
    async def say(
        self,
        text: str,
        *,
        barge_in: bool = True,
        min_speech_ms: int | None = None,
        phrases: Sequence[str] | None = None,
        model: LanguageModel | None = None,
    ) -> Said:
        """Speak ``text`` sentence by sentence. With ``barge_in`` the caller's speech (at least
        ``min_speech_ms`` of it) stops it and starts their turn, recognized with ``phrases``."""
        with span("tts", chars=len(text), barge_in=barge_in) as current:
            said = await self._say(text, barge_in, min_speech_ms, phrases, model)
            if current is not None:
                current.set_attributes(
                    {"ivr.outcome": said.outcome, "ivr.first_audio_ms": said.first_audio_ms or -1}
                )
            return said

    async def _say(
        self,
        text: str,
        barge_in: bool,
        min_speech_ms: int | None,
        phrases: Sequence[str] | None,
        model: LanguageModel | None,
    ) -> Said:
        synth = self.services.synth
        if synth is None:
            raise SpeechError("no TTS engine loaded")
        min_ms = self.services.barge_in_min_speech_ms if min_speech_ms is None else min_speech_ms
        speaking = _Speaking(barge_in, min_ms)
        self._speaking = speaking
        self._phrases = tuple(phrases) if phrases else None
        self._model = model
        if barge_in and self._ep is None and self._turn is None:
            self._arm_for_prompt()
        began = self._now()
        engines: set[str] = set()
        cached = True
        last: Playback | None = None
        outcome = "completed"
        chunks = synth.stream(text, self.rate)
        frame = self.rate * FRAME_MS // 1000
        carry: Pcm = np.zeros(0, dtype=np.int16)
        try:
            while speaking.stopped_by is None:
                try:
                    async with asyncio.timeout(self.services.tts_first_audio_timeout_s):
                        chunk: SpeechChunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError as err:
                    raise SpeechError(
                        f"TTS gave no audio within {self.services.tts_first_audio_timeout_s}s"
                    ) from err
                if speaking.stopped_by is not None:
                    break
                engines.add(chunk.engine)
                cached = cached and chunk.cached
                pcm = np.concatenate([carry, chunk.pcm]) if len(carry) else chunk.pcm
                # The player pads a piece's last frame with silence: between a sentence's head and
                # its rest that would be a gap inside a word, so odd samples wait for the next piece.
                whole = len(pcm) - len(pcm) % frame
                pcm, carry = pcm[:whole], pcm[whole:]
                if len(pcm):
                    last = self._player.play(pcm, self._on_first_packet if last is None else None)
            if len(carry) and speaking.stopped_by is None:  # the prompt's last samples
                last = self._player.play(carry, self._on_first_packet if last is None else None)
            if last is not None and speaking.stopped_by is None:
                await asyncio.shield(last.done)
        except SpeechError as err:
            outcome = "failed"
            self._log.error("tts.failed", error=str(err))
        finally:
            close = getattr(chunks, "aclose", None)  # an async generator: cancels the piece in flight
            if close is not None:
                await close()
            if speaking.stopped_by is None and last is not None and not last.done.done():
                self._player.stop()  # cancelled (hangup): stop sending
            if speaking.stopped_by is None and speaking.paused_at_ms is not None:
                # An onset paused the player after the prompt's last frame had gone out (the
                # same tick, before this coroutine ran): nothing of it is held, and a paused
                # player would hold every prompt after it (dead air until the caller hangs up).
                speaking.paused_at_ms = None
                self._player.resume()
            self._speaking = None
            if self._turn is None and self._waiting is None:
                self._disarm()  # nobody interrupted: listen() arms afresh with its own timeouts
        if speaking.stopped_by is not None:
            outcome = speaking.stopped_by
        first = self._first_packet_at
        self._first_packet_at = None
        first_ms = None if first is None else round((first - began) * 1000)
        if first_ms is not None:
            self._observe("tts_first_audio", first_ms / 1000)
        played_ms = round((self._now() - first) * 1000) if first is not None else 0
        said = Said(outcome, "+".join(sorted(engines)) or None, cached and bool(engines), first_ms, played_ms)
        self._turn_record(
            "system",
            text,
            outcome,
            engine=said.engine,
            cached=said.cached if engines else None,
            latency_ms=first_ms,
            detail={"played_ms": played_ms},
        )
        self._flush_unreplied()  # no reply audio went out (failure): keep the turn anyway
        return said

    def _on_first_packet(self, sent_at: float) -> None:
        self._first_packet_at = sent_at
        if self._unreplied is not None:
            turn, ended_at = self._unreplied
            self._unreplied = None
            latency = None if ended_at is None else round((sent_at - ended_at) * 1000)
            if latency is not None:
                self._observe("reply_latency", latency / 1000)
            self._submit(_with_latency(turn, latency))
            self._log.info("voice.reply_started", latency_ms=latency)

    # --- turns in the store -----------------------------------------------------------------
    def _hold_caller_turn(self, heard: Heard, reason: str, ended_at: float) -> None:
        self._flush_unreplied()
        result = heard.result
        detail: dict[str, Any] = {"end_reason": reason, "barge_in": heard.barge_in}
        if result is not None and not self.secure:
            detail["words"] = [
                {"word": w.word, "start_s": w.start_s, "end_s": w.end_s, "confidence": w.confidence}
                for w in result.words
            ]
        if heard.reason:
            detail["error"] = heard.reason
        turn = self._make_turn(
            "caller",
            SECURE_TEXT if self.secure and heard.text else heard.text,
            heard.outcome,
            confidence=heard.confidence,
            engine=result.engine if result else None,
            model=result.model if result else None,
            start_ms=heard.start_ms,
            end_ms=heard.end_ms,
            detail=detail,
        )
        if self.heard is not None:  # stored only once the reply starts (its latency)
            self.heard(turn)
        self._unreplied = (turn, ended_at)

    def _flush_unreplied(self) -> None:
        if self._unreplied is not None:
            self._submit(self._unreplied[0])
            self._unreplied = None

    def _turn_record(self, role: str, text: str, outcome: str, **kw: Any) -> None:
        self._submit(self._make_turn(role, text, outcome, **kw))

    def _make_turn(self, role: str, text: str, outcome: str, **kw: Any) -> Turn:
        self._seq += 1
        return Turn(self._call_id, self._seq, role, datetime.now(UTC), text, outcome, **kw)

    def close(self) -> None:
        """Call over: keep what was heard, stop recognizing."""
        self._disarm()
        if self._turn is not None and self._turn.ended is None:
            self._drop_stream(self._turn)
        self._flush_unreplied()

    def _drop_stream(self, turn: _CallerTurn) -> None:
        if turn.stream is not None:
            turn.stream.abort()
            turn.stream = None
            self._observe("asr_streams", -1)


def _with_latency(turn: Turn, latency_ms: int | None) -> Turn:
    return replace(turn, latency_ms=latency_ms)
