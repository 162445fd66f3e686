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

When the slot's length is known (``aligned``: PocketSphinx held to a grammar of that many digits,
speech/adapt/grammars.py), the islands are not needed: PocketSphinx's alignment cuts the string
into its digits, and each digit the classifier is sure of (``sure_of_one``) is its answer.
Measured on four-digit strings run together by Piper and espeak-ng voices over the simulated line
(160 strings): the length alone took string accuracy from 49 % to 88 %, the classifier on
the aligned digits to 99 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ivr_server.errors import AsrError
from ivr_server.media.g711 import Pcm
from ivr_server.speech.asr.base import DIGIT_WORDS, AsrResult, Recognizer, WordTiming
from ivr_server.speech.asr.digit_model import DigitClassifier, DigitGuess

FRAME_S = 0.01
DIGIT_NAMES = tuple(w for w in DIGIT_WORDS if w != "oh")  # index = the classifier's digit


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
    one_digit_max_s: float = 0.8
    """Islands longer than this, in which PocketSphinx hears several digits, are several digits
    run together (FSDD's single digits are at most 0.77 s long, 0.37 s typically)."""
    several_min_s: float = 0.6
    """An island where PocketSphinx hears three or more digits is that many when longer than this."""
    nucleus_db: float = 10.0
    """Each of several digits in a short island needs a frame this close to the island's peak."""
    sure_of_one: float = 0.9
    """A shorter island in which PocketSphinx hears several digits is one digit only when the
    classifier is this sure of it (99.5 % of its answers this sure are right: benchmarks/digits.md)."""


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
        *,
        aligned: bool = False,
        least: int = 1,
    ) -> None:
        self._inner = inner
        self._aligned = aligned
        self._least = least  # digits the grammar holds at least (aligned)
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
        levels = frame_levels_db(pcm, self._rate)
        found = islands(levels, self._settings)  # none: silence or steady noise, no digits
        said = [w for w in spoken.words if w.word in DIGIT_WORDS]
        if self._aligned and found and not said:  # the grammar found no path: not digits
            words: list[WordTiming] = []
        elif self._aligned and found and len(said) >= self._least:
            guesses = self._each_word(pcm, said, 0, len(pcm))
            words = [self._sure(w, g) or w for w, g in zip(said, guesses, strict=True)]
        else:  # no length, or the search ended short of it ("six five one" of "six five one
            # six": a weak edge digit lost); the islands find each digit
            words = self._islands(pcm, levels, found, spoken.words)
        confidences = [w.confidence for w in words if w.confidence is not None]
        return AsrResult(
            " ".join(w.word for w in words),
            True,
            spoken.engine,
            self.model,
            min(confidences) if confidences else None,
            tuple(words),
        )

    def _islands(
        self, pcm: Pcm, levels: np.ndarray, found: list[tuple[int, int]], spoken: tuple[WordTiming, ...]
    ) -> list[WordTiming]:
        """The digits of every island. Each island's clip reaches halfway into the pauses around
        it: soft onsets and tails (the "f" of "five") stay in, and the classifier trims as it
        did in training."""
        step = int(self._rate * FRAME_S)
        cuts = [0] + [(b + a) // 2 * step for (_, b), (a, _) in zip(found, found[1:], strict=False)]
        cuts.append(len(pcm))
        words: list[WordTiming] = []
        for (a, b), lo, hi in zip(found, cuts, cuts[1:], strict=False):
            words += self._island(pcm, levels, spoken, a * FRAME_S, b * FRAME_S, lo, hi)
        return words

    def _island(
        self,
        pcm: Pcm,
        levels: np.ndarray,
        spoken: tuple[WordTiming, ...],
        start_s: float,
        end_s: float,
        lo: int,
        hi: int,
    ) -> list[WordTiming]:
        """The digits of one island, whose clip is ``pcm[lo:hi]``."""
        inside = [w for w in spoken if start_s <= (w.start_s + w.end_s) / 2 < end_s]
        if len(inside) > 1:
            # PocketSphinx hears several digits: each of its words is classified on its own.
            # Where the classifier is sure of a word it names the digit, else PocketSphinx does.
            guesses = self._each_word(pcm, inside, lo, hi)
            sure = [self._sure(w, g) for w, g in zip(inside, guesses, strict=True)]
            each = [named or w for named, w in zip(sure, inside, strict=True)]
            long = end_s - start_s > self._settings.one_digit_max_s
            # Three or more words with a vowel each, over more than several_min_s, are not
            # one digit (FSDD's rare three-word splits are 0.50-0.58 s long).
            three = len(inside) > 2 and end_s - start_s > self._settings.several_min_s
            if long or (three and self._voiced(levels, inside)):
                return each
            whole = self._classify(pcm[lo:hi])
            # Two words: PocketSphinx often splits a digit cut tight (its "f" or "s" apart),
            # and the fragments classify surely too, so a sure answer for the whole wins.
            unsure = whole is None or whole.confidence < self._settings.sure_of_one
            if None not in sure and unsure and self._voiced(levels, inside):
                return each
        else:
            whole = self._classify(pcm[lo:hi])
        if whole is None:
            return []
        return [WordTiming(DIGIT_NAMES[whole.digit], start_s, end_s, whole.confidence)]

    def _sure(self, spoken: WordTiming, guess: DigitGuess | None) -> WordTiming | None:
        """The classifier's digit at PocketSphinx's timing, when the classifier is sure of it."""
        if guess is None or guess.confidence < self._settings.sure_of_one:
            return None
        return WordTiming(DIGIT_NAMES[guess.digit], spoken.start_s, spoken.end_s, guess.confidence)

    def _voiced(self, levels: np.ndarray, inside: list[WordTiming]) -> bool:
        """Every word has a vowel of its own: a frame within ``nucleus_db`` of the loudest (a
        split-off "f" or "s" has none)."""
        peak = float(levels.max())
        for w in inside:
            first = int(w.start_s / FRAME_S)
            span = levels[first : max(first + 1, int(w.end_s / FRAME_S))]
            if not len(span) or float(span.max()) < peak - self._settings.nucleus_db:
                return False
        return True

    def _classify(self, clip: Pcm) -> DigitGuess | None:
        try:
            return self._classifier.classify(clip, self._rate)
        except AsrError:  # too faint to be a digit after all
            return None

    def _each_word(self, pcm: Pcm, inside: list[WordTiming], lo: int, hi: int) -> list[DigitGuess | None]:
        """Each word's clip reaches halfway to its neighbours, within its island's [lo, hi)."""
        bounds = [lo]
        bounds += [
            int((a.end_s + b.start_s) / 2 * self._rate) for a, b in zip(inside, inside[1:], strict=False)
        ]
        bounds.append(hi)
        return [self._classify(pcm[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
