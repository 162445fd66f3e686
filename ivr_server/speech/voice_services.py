"""Loading the speech engines a server shares among its calls, with graceful degradation.

A speech engine that cannot load never stops the server: without ASR, voice flows fall back to
the keypad; without TTS (Piper and espeak-ng both gone), to recorded prompts. Each decision is
logged with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from ivr_server.config import Settings, endpoint_settings
from ivr_server.errors import AsrError, EngineUnavailable, SpeechError
from ivr_server.speech.asr.service import AsrService
from ivr_server.speech.asr.worker import EngineSpec
from ivr_server.speech.tts.cache import PromptCache
from ivr_server.speech.tts.engines import load_fallback, load_tts_engine
from ivr_server.speech.tts.lexicon import Lexicon
from ivr_server.speech.tts.synthesizer import Synthesizer
from ivr_server.speech.vad.detectors import load_detector
from ivr_server.speech.voice import VoiceServices

log = structlog.get_logger(__name__)


@dataclass
class LoadedVoice:
    services: VoiceServices

    async def close(self) -> None:
        if self.services.asr is not None:
            await self.services.asr.close()
        if self.services.synth is not None:
            self.services.synth.close()


def load_synthesizer(s: Settings) -> Synthesizer:
    """The TTS engine from the settings with its fallback, cache and lexicon (CLI and server)."""
    engine = load_tts_engine(s.tts_engine, model=s.tts_model, voice=s.tts_voice, threads=s.tts_threads)
    fallback = load_fallback(engine) if s.tts_fallback else None
    lexicon = Lexicon.load(s.lexicon_path) if s.lexicon_path is not None else None
    cache = PromptCache(s.tts_cache_mb * 1024 * 1024, s.tts_cache_path)
    return Synthesizer(engine, fallback, cache, lexicon)


async def load_voice(s: Settings, sample_rate: int, prompt_texts: Iterable[str]) -> LoadedVoice:
    load_detector(s.vad_detector, sample_rate)  # a bad VAD name is a config error: fail now
    asr: AsrService | None = None
    try:
        spec = EngineSpec(
            s.asr_engine,
            s.asr_vosk_model,
            s.asr_vosk_language,
            s.asr_search,
            s.asr_accurate_streams,
            s.asr_telephone_model,
            sample_rate,
        )
        choice = spec.load()
        asr = AsrService(
            choice.engine,
            spec,
            s.asr_backend,
            s.asr_workers,
            s.asr_warm_streams,
        )
        await asr.start()
        telephone = getattr(choice.engine, "telephone", None)
        log.info("asr.engine", engine=choice.engine.name, model=choice.engine.model_id, reason=choice.reason,
                 telephone_model=telephone.label if telephone is not None else None)  # fmt: skip
    except (EngineUnavailable, AsrError) as err:
        log.error("asr.unavailable", error=str(err), fallback="dtmf")
        asr = None
    synth: Synthesizer | None = None
    try:
        synth = load_synthesizer(s)
        await synth.prerender(prompt_texts, sample_rate)
    except (EngineUnavailable, SpeechError) as err:
        log.error("tts.unavailable", error=str(err), fallback="recorded prompts")
        if synth is not None:
            synth.close()
        synth = None
    services = VoiceServices(
        asr=asr,
        synth=synth,
        vad=s.vad_detector,
        endpoint=endpoint_settings(s),
        barge_in_min_speech_ms=s.barge_in_min_speech_ms,
        asr_final_timeout_s=s.asr_final_timeout_s,
        tts_first_audio_timeout_s=s.tts_first_audio_timeout_s,
    )
    return LoadedVoice(services)
