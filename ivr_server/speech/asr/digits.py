"""Digit strings the way an IVR hears them: the digit classifier per spoken digit, PocketSphinx
for digits run together.

PocketSphinx's wideband model gets about half of the FSDD telephone digits right even with a
digit grammar; the bundled classifier (digit_model.py) gets about 97 % of unseen speakers'. But
the classifier takes one digit at a time, and callers say "four four two one" with pauses or
without. So the utterance is cut into islands of sound at pauses (``islands``, pure): an island
of one digit's length goes to the classifier; a longer one (digits run together) takes the words
PocketSphinx's digit grammar found inside it, unless it found at most one there, when the island
is one slow digit and goes to the classifier too. PocketSphinx runs on the stream as it comes
(its partial results are the partials here); the classifier runs at ``finish``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ivr_server.errors import AsrError
from ivr_server.media.g711 import Pcm
from ivr_server.speech.asr.base import DIGIT_WORDS, AsrResult, Recognizer, WordTiming
from ivr_server.speech.asr.digit_model import DigitClassifier

FRAME_S = 0.01
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GRAMMAR = DIGIT_WORDS  # the grammar that routes a stream here


@dataclass(frozen=True)
class IslandSettings:
    below_peak_db: float = 35.0
    """A frame is sound when within this much of the utterance's loudest frame..."""
    above_floor_db: float = 12.0
    """...and this far above its noise floor (its 10th-percentile frame)..."""
    floor_cap_below_peak_db: float = 20.0
    """...except in audio cut tight around the speech, where that "floor" is speech itself: then
    frames within this much of the peak are sound."""
    min_dynamics_db: float = 6.0
    """Audio whose loudest frame is less than this above its floor is steady noise or silence."""
    bridge_s: float = 0.15
    """Gaps shorter than this are inside a word (the closure before the t of "eight")."""
    min_island_s: float = 0.08
    """Shorter sound is a click or a breath, not a digit."""
    one_digit_max_s: float = 1.0
    """Islands longer than this are taken as several digits run together."""


def frame_levels_db(pcm: Pcm, rate: int) -> np.ndarray:
    """Energy of each 10 ms frame in dB (int16 scale)."""
    step = max(1, int(rate * FRAME_S))
    n = len(pcm) // step
    if n == 0:
        return np.zeros(0)
    frames = pcm[: n * step].astype(np.float64).reshape(n, step)
    return np.asarray(10.0 * np.log10((frames**2).mean(axis=1) + 1.0))


def islands(levels_db: np.ndarray, settings: IslandSettings = IslandSettings()) -> list[tuple[int, int]]:
    """(first frame, end frame) of each stretch of sound in frame levels: frames loud enough,
    with short gaps bridged and short blips dropped."""
    if len(levels_db) == 0:
        return []
    peak = float(levels_db.max())
    floor = float(np.percentile(levels_db, 10))
    if peak - floor < settings.min_dynamics_db:
        return []
    above_floor = min(floor + settings.above_floor_db, peak - settings.floor_cap_below_peak_db)
    threshold = max(peak - settings.below_peak_db, above_floor)
    loud = np.flatnonzero(levels_db >= threshold)
    bridge = int(round(settings.bridge_s / FRAME_S))
    spans: list[tuple[int, int]] = []
    start = prev = int(loud[0])
    for frame in loud[1:].tolist():
        if frame - prev > bridge:
            spans.append((start, prev + 1))
            start = frame
        prev = frame
    spans.append((start, prev + 1))
    shortest = int(round(settings.min_island_s / FRAME_S))
    return [(a, b) for a, b in spans if b - a >= shortest]


class DigitsRecognizer:
    """A ``Recognizer`` for the digits grammar: PocketSphinx streams, the classifier decides."""

    def __init__(
        self,
        inner: Recognizer,
        classifier: DigitClassifier,
        sample_rate: int,
        model: str,
        settings: IslandSettings = IslandSettings(),
    ) -> None:
        self._inner = inner
        self._classifier = classifier
        self._rate = sample_rate
        self._settings = settings
        self._audio: list[Pcm] = []
        self.model = model

    def feed(self, pcm: Pcm) -> AsrResult | None:
        partial = self._inner.feed(pcm)
        self._audio.append(np.array(pcm, dtype=np.int16, copy=True))
        return partial

    def finish(self) -> AsrResult:
        spoken = self._inner.finish()
        pcm = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.int16)
        self._audio = []
        words: list[WordTiming] = []
        step = int(self._rate * FRAME_S)
        found = islands(frame_levels_db(pcm, self._rate), self._settings)
        # Each island's clip reaches halfway into the pauses around it: soft onsets and tails
        # (the "f" of "five") stay in, and the classifier trims as it did in training.
        cuts = [0] + [(b + a) // 2 * step for (_, b), (a, _) in zip(found, found[1:], strict=False)]
        cuts.append(len(pcm))
        for (a, b), lo, hi in zip(found, cuts, cuts[1:], strict=False):
            start_s, end_s = a * FRAME_S, b * FRAME_S
            inside = [w for w in spoken.words if start_s <= (w.start_s + w.end_s) / 2 < end_s]
            if end_s - start_s > self._settings.one_digit_max_s and len(inside) > 1:
                words += inside
                continue
            try:
                guess = self._classifier.classify(pcm[lo:hi], self._rate)
            except AsrError:  # too faint to be a digit after all
                continue
            words.append(WordTiming(DIGIT_NAMES[guess.digit], start_s, end_s, guess.confidence))
        confidences = [w.confidence for w in words if w.confidence is not None]
        return AsrResult(
            " ".join(w.word for w in words),
            True,
            spoken.engine,
            self.model,
            min(confidences) if confidences else None,
            tuple(words),
        )
