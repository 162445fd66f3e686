"""Choosing and loading the ASR engine the settings ask for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ivr_server.errors import EngineUnavailable
from ivr_server.speech.asr.base import AsrEngine

ENGINES = ("auto", "vosk", "pocketsphinx")


@dataclass(frozen=True)
class Choice:
    engine: AsrEngine
    reason: str  # logged at start-up: why this engine


def load_engine(
    name: str,
    vosk_model: Path | None = None,
    vosk_language: str | None = None,
    *,
    search: str = "auto",
    accurate_streams: int = 1,
    telephone_model: str = "bundled",
    call_rate: int = 8000,
) -> Choice:
    """The engine ``name`` ("auto", "vosk", "pocketsphinx"), loaded; EngineUnavailable says why
    not. ``auto`` takes Vosk when a model is configured and present, else PocketSphinx.
    ``search`` and ``accurate_streams`` choose PocketSphinx's search profile (its module says how);
    ``telephone_model`` its acoustic adaptation for calls arriving at ``call_rate``."""
    if name not in ENGINES:
        raise EngineUnavailable(f"unknown ASR engine {name!r} (choose from {', '.join(ENGINES)})")
    if name == "vosk" or (name == "auto" and vosk_model is not None and vosk_model.is_dir()):
        if vosk_model is None:
            raise EngineUnavailable("IVR_ASR_ENGINE=vosk needs IVR_ASR_VOSK_MODEL (a model directory)")
        from ivr_server.speech.asr.vosk_engine import VoskEngine

        why = "asked for" if name == "vosk" else "auto: a Vosk model is configured and present"
        return Choice(VoskEngine(vosk_model, vosk_language), f"{why} ({vosk_model})")
    from ivr_server.speech.asr.pocketsphinx_engine import PocketSphinxEngine

    if name == "pocketsphinx":
        why = "asked for"
    elif vosk_model is None:
        why = "auto: no Vosk model configured (IVR_ASR_VOSK_MODEL)"
    else:
        why = f"auto: the configured Vosk model {vosk_model} does not exist"
    engine = PocketSphinxEngine(
        search=search, accurate_streams=accurate_streams, telephone_model=telephone_model, call_rate=call_rate
    )
    return Choice(engine, why)
