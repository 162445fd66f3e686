"""Vosk (Kaldi): the primary engine, any model directory from config.

One ``vosk.Model`` per process, shared by every call; one ``KaldiRecognizer`` per stream. Vosk
resamples internally, so any rate from 8 to 48 kHz is taken. Grammar words must be in the
model's vocabulary (checked, with the missing ones named).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr_server.errors import AsrError, EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.speech.asr.base import AsrResult, LanguageModel, StreamState, WordTiming

_LANG_IN_NAME = re.compile(r"vosk[-_]model[-_](?:small[-_])?([a-z]{2}(?:[-_][a-z]{2})?)(?:[-_]|$)")


def language_of(model_dir: Path) -> str:
    """The language a model directory's name gives (vosk-model-small-en-us-0.15 -> en-us)."""
    for part in reversed(model_dir.resolve().parts):
        found = _LANG_IN_NAME.search(part.lower())
        if found:
            return found.group(1).replace("_", "-")
    return "und"


class VoskEngine:
    name = "vosk"

    def __init__(self, model_dir: Path, language: str | None = None) -> None:
        try:
            import vosk
        except ImportError as err:
            raise EngineUnavailable("Vosk is not installed: pip install vosk") from err
        if not model_dir.is_dir() or not any((model_dir / p).exists() for p in ("am", "conf", "graph")):
            raise EngineUnavailable(
                f"no Vosk model at {model_dir} (expected a model directory with am/, conf/, graph/); "
                "download one with: ivr-server models fetch vosk-small-en-us"
            )
        vosk.SetLogLevel(-1)
        self._vosk: Any = vosk
        try:
            self._model = vosk.Model(str(model_dir))
        except Exception as err:  # vosk raises a bare Exception for unreadable models
            raise EngineUnavailable(f"Vosk could not load the model at {model_dir}: {err}") from err
        self.model_dir = model_dir
        self.model_id = model_dir.name if model_dir.name != "model" else model_dir.parent.name
        self.languages = frozenset({language or language_of(model_dir)})

    def accepts_rate(self, sample_rate: int) -> bool:
        return 8000 <= sample_rate <= 48000

    def warm(self, streams: int, models: Sequence[LanguageModel | None] = (None,)) -> None:
        """Nothing to build ahead: a recognizer shares the loaded model and is cheap to make."""

    def recognizer(
        self, sample_rate: int, phrases: Sequence[str] | None = None, model: LanguageModel | None = None
    ) -> VoskRecognizer:
        if not phrases and model is not None and model.phrases:
            # A flow's closed question: its answers as a phrase list, those whose words this
            # model has (an n-gram model cannot be loaded into a Kaldi graph at run time).
            known = [
                p for p in model.phrases if all(self._model.vosk_model_find_word(w) >= 0 for w in p.split())
            ]
            phrases = known or None
        if phrases:
            missing = sorted(
                {w for p in phrases for w in p.split() if self._model.vosk_model_find_word(w) < 0}
            )
            if missing:
                raise AsrError(f"grammar words the Vosk model {self.model_id} lacks: {', '.join(missing)}")
            # [unk] (anything else) only where the model has it; raw UTF-8, as Vosk reads it.
            extra = ["[unk]"] if self._model.vosk_model_find_word("[unk]") >= 0 else []
            rec = self._vosk.KaldiRecognizer(
                self._model, sample_rate, json.dumps([*phrases, *extra], ensure_ascii=False)
            )
        else:
            rec = self._vosk.KaldiRecognizer(self._model, sample_rate)
        rec.SetWords(True)
        rec.SetPartialWords(True)
        return VoskRecognizer(self, rec)


class VoskRecognizer:
    def __init__(self, engine: VoskEngine, rec: Any) -> None:
        self._engine = engine
        self._rec = rec
        self._segments: list[dict[str, Any]] = []  # finished at Vosk's own endpoints
        self._state = StreamState(engine.name, engine.model_id)

    def feed(self, pcm: Pcm) -> AsrResult | None:
        self._state.check_open()
        if self._rec.AcceptWaveform(pcm.astype("<i2").tobytes()):
            self._segments.append(json.loads(self._rec.Result()))
            current = ""
        else:
            current = json.loads(self._rec.PartialResult()).get("partial", "")
        return self._state.partial(" ".join([*(s.get("text", "") for s in self._segments), current]).strip())

    def finish(self) -> AsrResult:
        self._state.close()
        self._segments.append(json.loads(self._rec.FinalResult()))
        words = tuple(
            WordTiming(w["word"], float(w["start"]), float(w["end"]), float(w.get("conf", 1.0)))
            for s in self._segments
            for w in s.get("result", [])
            if w.get("word") != "[unk]"
        )
        text = " ".join(s.get("text", "") for s in self._segments if s.get("text")).strip()
        text = " ".join(t for t in text.split() if t != "[unk]")
        confidence = sum(w.confidence or 0.0 for w in words) / len(words) if words else None
        return AsrResult(text, True, self._engine.name, self._engine.model_id, confidence, words)
