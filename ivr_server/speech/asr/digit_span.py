"""Digits said inside an open request, heard again with the digit grammar.

"My card ending in four nine six four was stolen": the open question's n-gram model hears the
request well and the digits in it badly ("card ending four i speak for"), and one digit wrong
is a wrong card. The n-gram's words still show where the digits were said, so that stretch of
the same audio goes again through the grammar of the slot's length and the digit classifier
(what a digit question hears with: digits.py), and their digits replace the words there.

The stretch: the cluster of digit words and words that sound like one ("for", "to"), at most one
other word apart, holding at least two real digit words; widened by the neighbouring words, up
to ``MAX_WIDEN`` on each side, until it has as many words as the nearest length the flow's
slots take. A cluster that already holds a run of exactly such a length is left alone. Chosen
on the development half of scripts/bench-embedded-digits (card sentences); its test half
(account numbers) and the real calls of scripts/bench-ab are the held-out check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from ivr_server.media.g711 import Pcm
from ivr_server.speech.asr.base import DIGIT_WORDS, Alternative, AsrResult, Recognizer

# Words that sound the same as a digit: the n-gram search writes them for a digit in passing.
HOMOPHONES = frozenset({"for", "fore", "or", "won", "ate", "to", "too"})
MAX_GAP = 1  # other words between two digit-like words of one cluster
MAX_WIDEN = 2  # words added on each side to reach the length
MARGIN_S = 0.05  # audio kept beyond the first and last word's edges
# Audio kept to hear again: a request longer than this (the turn's own limit is shorter) is
# heard once, as the n-gram heard it. Bounds a call's memory at 16 KB/s of 8 kHz audio.
MAX_AUDIO_S = 30.0


@dataclasses.dataclass(frozen=True)
class Stretch:
    first: int  # index of its first word
    last: int  # index of its last word
    length: int  # the digit string's length to hear it with


def digit_stretch(words: Sequence[str], lengths: Sequence[int]) -> Stretch | None:
    """Where in ``words`` a digit string of one of ``lengths`` was said and misheard, or None
    (no digits said, or heard whole already)."""
    like = [i for i, w in enumerate(words) if w in DIGIT_WORDS or w in HOMOPHONES]
    if not like or not lengths:
        return None
    clusters = [[like[0]]]
    for i in like[1:]:
        if i - clusters[-1][-1] <= MAX_GAP + 1:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    best = max(clusters, key=lambda c: sum(words[i] in DIGIT_WORDS for i in c))
    if sum(words[i] in DIGIT_WORDS and words[i] != "oh" for i in best) < 2:
        return None  # "oh" is also just "oh" ("about a charge" heard "about it charge oh one")
    first, last = best[0], best[-1]
    if _longest_run(words[first : last + 1]) in lengths:
        return None
    length = min(lengths, key=lambda n: (abs(n - len(best)), n))
    for _ in range(MAX_WIDEN):
        if last - first + 1 < length and last + 1 < len(words):
            last += 1
        if last - first + 1 < length and first > 0:
            first -= 1
    return Stretch(first, last, length)


def _longest_run(words: Sequence[str]) -> int:
    run = longest = 0
    for w in words:
        run = run + 1 if w in DIGIT_WORDS else 0
        longest = max(longest, run)
    return longest


class DigitSpanRecognizer:
    """The open question's recognizer, and at ``finish`` a misheard digit stretch heard again by
    ``grammar(length)`` (a fresh digit-grammar recognizer of that length)."""

    def __init__(
        self, open_: Recognizer, grammar: Callable[[int], Recognizer], rate: int, lengths: Sequence[int]
    ) -> None:
        self._open = open_
        self._grammar = grammar
        self._rate = rate
        self._lengths = tuple(lengths)
        self._audio: list[Pcm] = []
        self._samples = 0
        self._max_samples = int(MAX_AUDIO_S * rate)
        self.model = getattr(open_, "model", "")

    def feed(self, pcm: Pcm) -> AsrResult | None:
        if self._samples < self._max_samples:  # a copy: the caller may reuse its buffer
            self._audio.append(np.array(pcm, dtype=np.int16, copy=True))
            self._samples += len(pcm)
        return self._open.feed(pcm)

    def finish(self) -> AsrResult:
        result = self._open.finish()
        words = [w.word for w in result.words]
        stretch = digit_stretch(words, self._lengths)
        if stretch is None or len(words) != len(result.text.split()):
            return result  # nothing to hear again, or words and text disagree (silence, fillers)
        start = max(0.0, result.words[stretch.first].start_s - MARGIN_S)
        end = result.words[stretch.last].end_s + MARGIN_S
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
        self._audio = []
        if self._samples >= self._max_samples and int(end * self._rate) > len(audio):
            return result  # past the audio kept
        cut = audio[int(start * self._rate) : int(end * self._rate)]
        recognizer = self._grammar(stretch.length)
        recognizer.feed(cut)
        digits = recognizer.finish()
        if not digits.text:
            return result
        heard = tuple(
            dataclasses.replace(w, start_s=w.start_s + start, end_s=w.end_s + start) for w in digits.words
        )
        spliced = result.words[: stretch.first] + heard + result.words[stretch.last + 1 :]
        text = " ".join([*words[: stretch.first], digits.text, *words[stretch.last + 1 :]])
        alternatives = result.alternatives
        if alternatives:  # the others stay as the n-gram heard them
            alternatives = (Alternative(text, alternatives[0].score), *alternatives[1:])
        return dataclasses.replace(result, text=text, words=spliced, alternatives=alternatives)
