"""Understanding measured on speech, the way a call hears it (``ivr-server nlu eval-spoken``,
scripts/bench-spoken).

Each recording goes through the recognizer with the resources the flow compiles for the state
(streamed in 20 ms chunks, as a call streams it), then through the flow's intent model and the
state's decision rules (decide.py: act / confirm / ask again). The same sentences' text goes
through the same model, so text and spoken accuracy are side by side on the same utterances.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivr_server.dialog.decide import Guess, decide
from ivr_server.dialog.nlu.classifier import IntentClassifier
from ivr_server.dialog.spec.model import Flow
from ivr_server.errors import AsrError, MediaError
from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm
from ivr_server.speech.adapt.grammars import answer_kind
from ivr_server.speech.adapt.words import spoken_words
from ivr_server.speech.asr.base import Alternative, AsrEngine, AsrResult, LanguageModel, feed_all
from ivr_server.speech.asr.evaluate import word_errors

MAX_MISTAKES = 25


@dataclass(frozen=True)
class Recording:
    text: str  # what was said
    category: str  # the intent it means
    pcm: Pcm
    rate: int
    voice: str = ""  # who said it (per-voice figures)
    source: str = ""  # file it came from


@dataclass
class SpokenReport:
    utterances: int
    text_accuracy: float
    spoken_accuracy: float
    wer: float
    asr_rtf: float
    model: str
    resources: str | None
    actions: dict[str, float]  # share of spoken turns acted on / confirmed / asked again
    wrong_actions: float  # share acted on with the wrong intent (the costly error)
    voices: dict[str, dict[str, float]] = field(default_factory=dict)
    mistakes: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_manifest(manifest: Path) -> list[Recording]:
    """``path,text,category`` rows; paths relative to the manifest; WAV at 8 or 16 kHz."""
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MediaError(f"manifest {manifest} cannot be read: {err}") from err
    if not rows or not {"path", "text", "category"} <= set(rows[0]):
        raise MediaError(f"manifest {manifest} needs a header path,text,category and at least one row")
    out = []
    for line, row in enumerate(rows, 2):
        path = manifest.parent / (row.get("path") or "")
        if not row.get("path") or not path.is_file():
            raise MediaError(f"{manifest}:{line}: no audio file {path}")
        rate, pcm = read_wav(path)
        if rate not in (8000, 16000):
            raise MediaError(f"{manifest}:{line}: {path} is {rate} Hz; use 8 or 16 kHz audio")
        out.append(
            Recording(
                row.get("text") or "", row.get("category") or "", pcm, rate, row.get("voice") or "", str(path)
            )
        )
    return out


def kind_for_state(flow: Flow, state_name: str) -> str | None:
    """What a state's question is heard with: an open question its flow's open model, a
    collect state the kind of its first slot (digits: their grammar, returned as "digits")."""
    state = flow.states.get(state_name)
    if state is None:
        raise AsrError(f"flow {flow.name} has no state {state_name!r} (states: {', '.join(flow.states)})")
    if state.listen:
        return None
    for name in state.collect:
        slot = flow.slots[name]
        return answer_kind(slot)
    raise AsrError(f"state {state_name!r} of flow {flow.name} neither listens nor collects")


def nbest_guesses(model: IntentClassifier, alternatives: Sequence[Alternative], text: str) -> list[Guess]:
    """The intent model over the recognizer's alternatives: each hypothesis's calibrated
    probabilities weighted by its posterior, so one misheard word in the best hypothesis does
    not decide alone. Without alternatives, the best text's guesses."""
    if len(alternatives) < 2:
        return model.guesses(text)
    weights = np.array([10**a.score for a in alternatives])
    weights /= weights.sum()
    probs = (model.probabilities([a.text for a in alternatives]) * weights[:, None]).sum(axis=0)
    return model.guesses_from(probs)


@dataclass(frozen=True)
class Recognized:
    recording: Recording
    result: AsrResult
    cpu_s: float


def recognize_all(
    recordings: Iterable[Recording],
    engine: AsrEngine,
    language_model: LanguageModel | None = None,
    phrases: Sequence[str] | None = None,
) -> list[Recognized]:
    """Each recording streamed through a fresh recognizer, as a call streams it."""
    out = []
    for rec in recordings:
        recognizer = engine.recognizer(rec.rate, phrases, language_model)
        started = time.process_time()
        feed_all(recognizer, rec.pcm, rec.rate)
        result = recognizer.finish()
        out.append(Recognized(rec, result, time.process_time() - started))
    return out


def understand(
    recognized: Sequence[Recognized],
    flow: Flow,
    state_name: str,
    intent_model: IntentClassifier,
    nbest: bool = False,
) -> SpokenReport:
    """The state's decision on each recognition, next to the same model on the text."""
    state = flow.states[state_name]
    intents = [flow.intents[n] for n in state.listen] or list(flow.intents.values())
    rows: list[dict[str, Any]] = []
    for item in recognized:
        rec, result = item.recording, item.result
        guesses = (
            nbest_guesses(intent_model, result.alternatives, result.text)
            if nbest
            else intent_model.guesses(result.text)
        )
        decision = decide(intents, state.settings, result.text, "", guesses, result.confidence)
        typed = intent_model.guesses(rec.text)
        ref, hyp = spoken_words(rec.text), spoken_words(result.text)
        rows.append({
            "voice": rec.voice, "text": rec.text, "heard": result.text, "category": rec.category,
            "text_intent": typed[0].intent if typed else "",
            "spoken_intent": guesses[0].intent if guesses else "",
            "action": decision.kind, "acted": decision.intent,
            "errors": word_errors(ref, hyp), "words": len(ref),
        })  # fmt: skip
    if not rows:
        raise AsrError("nothing to evaluate")
    report = _summary(rows)
    audio_s = sum(len(i.recording.pcm) / i.recording.rate for i in recognized)
    report.asr_rtf = round(sum(i.cpu_s for i in recognized) / max(audio_s, 1e-9), 4)
    report.model = ", ".join(sorted({i.result.model for i in recognized}))
    versions = {i.result.resources for i in recognized} - {None}
    report.resources = ", ".join(sorted(v for v in versions if v)) or None
    return report


def evaluate_spoken(
    recordings: Iterable[Recording],
    engine: AsrEngine,
    flow: Flow,
    state_name: str,
    intent_model: IntentClassifier,
    language_model: LanguageModel | None = None,
    phrases: Sequence[str] | None = None,
    nbest: bool = False,
) -> SpokenReport:
    recognized = recognize_all(recordings, engine, language_model, phrases)
    return understand(recognized, flow, state_name, intent_model, nbest)


ACTIONS = ("act", "confirm", "disambiguate", "no_match")


def _summary(rows: list[dict[str, Any]]) -> SpokenReport:
    n = len(rows)

    def accuracy(key: str, subset: list[dict[str, Any]]) -> float:
        return round(float(sum(r[key] == r["category"] for r in subset)) / max(len(subset), 1), 4)

    def wer(subset: list[dict[str, Any]]) -> float:
        words: int = sum(r["words"] for r in subset)
        return round(float(sum(r["errors"] for r in subset)) / max(words, 1), 4)

    voices = {}
    for voice in sorted({r["voice"] for r in rows}):
        subset = [r for r in rows if r["voice"] == voice]
        voices[voice] = {"utterances": len(subset), "spoken_accuracy": accuracy("spoken_intent", subset),
                         "text_accuracy": accuracy("text_intent", subset), "wer": wer(subset)}  # fmt: skip
    mistakes = [
        {k: r[k] for k in ("voice", "text", "heard", "category", "spoken_intent")}
        for r in rows
        if r["spoken_intent"] != r["category"]
    ][:MAX_MISTAKES]
    return SpokenReport(
        utterances=n,
        text_accuracy=accuracy("text_intent", rows),
        spoken_accuracy=accuracy("spoken_intent", rows),
        wer=wer(rows),
        asr_rtf=0.0,
        model="",
        resources=None,
        actions={a: round(sum(r["action"] == a for r in rows) / n, 4) for a in ACTIONS},
        wrong_actions=round(sum(r["action"] == "act" and r["acted"] != r["category"] for r in rows) / n, 4),
        voices=voices,
        mistakes=mistakes,
    )
