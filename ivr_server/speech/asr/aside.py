"""A grammar's question heard with the words callers say there instead of its answer.

A digit question listens with a grammar of the string's length, which holds the digits well and
hears nothing else: "cancel that" or "what's my balance first?" comes out as four digits. So the
same audio also goes through an n-gram model of what callers say aside (the flow's repairs and
requests, and digit strings: speech/adapt/compile.py), and its words win when they are not the
answer (says_other) or are the answer wrapped in words the grammar cannot hold ("it's four four
two one": wrapped_answer). Digits alone stay with the grammar and its digit model, and so do
words that are its digits misheard: at least three of their digit words are the grammar's
over the same audio (same_digits: an account read out with pauses, "two, four, six, eight, ...",
heard "is are have a one three that's seven"; found in bench-ab's calls). When the
words win, the grammar's own answer goes along (AsrResult.grammar): words that turn out
to mean nothing at the question give way to it in the engine. The rules were chosen on the
development half of scripts/bench-closed-questions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ivr_server.media.g711 import Pcm
from ivr_server.speech.asr.base import DIGIT_WORDS, AsrResult, Recognizer, WordTiming

# Words too slight to be a request on their own: the n-gram search names them in line noise.
SLIGHT = frozenset({"a", "an", "the", "and", "uh", "um", "er", "ah", "i", "it", "is", "to", "of", "in"})
# What the n-gram search hears for a digit said quickly ("four four two one": "or for to one").
SOUNDS_LIKE_DIGITS = frozenset({"for", "fore", "won", "ate", "or"})
AGREE = 3  # digits the aside words share with the grammar's, in time, to be its answer misheard
OVERLAP_S = 0.05  # a shared digit: the same word over at least this much of the same audio


def says_other(words: list[str], least_digits: int) -> bool:
    """Whether words heard at a digit question are something other than its answer: fewer digits
    than half the string and two words of substance (or one and no digit at all: "repeat"), or
    more words of substance than digits, at least three ("oh one what's my balance first").
    One word beside a digit is more often a misheard digit ("i four i say it") than a request."""
    digits = sum(w in DIGIT_WORDS or w in SOUNDS_LIKE_DIGITS for w in words)
    other = [w for w in words if w not in DIGIT_WORDS and w not in SOUNDS_LIKE_DIGITS and w not in SLIGHT]
    if len(other) >= 3 and len(other) > digits:
        return True
    return digits < max(1, least_digits // 2) and (len(other) >= 2 or (len(other) == 1 and digits == 0))


def wrapped_answer(words: list[str], least_digits: int, most_digits: int) -> bool:
    """Whether the words hold a whole answer, a run of digit words of an allowed length, with
    other words around it ("my account number is ..."): said so, the n-gram model hears the
    digits better than a grammar that has no room for the words."""
    run = longest = 0
    for w in words:
        run = run + 1 if w in DIGIT_WORDS else 0
        longest = max(longest, run)
    return least_digits <= longest <= most_digits and len(words) > longest


def _overlap(a: WordTiming, b: WordTiming) -> float:
    return min(a.end_s, b.end_s) - max(a.start_s, b.start_s)


def same_digits(aside: Sequence[WordTiming], grammar: Sequence[WordTiming]) -> bool:
    """Whether the aside words are the grammar's answer misheard ("is are have a one three
    that's seven" over "two four six eight one three five seven"): no more words than its
    digits (one more at most), and at least ``AGREE`` of their digit words are one of the
    grammar's digits heard over the same audio (word edges differ between the two searches)."""
    if not grammar or len(aside) > len(grammar) + 1:
        return False
    agree = 0
    for word in aside:
        if word.word not in DIGIT_WORDS:
            continue
        agree += any(_digit(g.word) == _digit(word.word) and _overlap(word, g) > OVERLAP_S for g in grammar)
    return agree >= AGREE


def _digit(word: str) -> str:
    return "zero" if word == "oh" else word


class AsideRecognizer:
    """The grammar's recognizer and the aside model's on one stream; the grammar's result unless
    the aside words say something else or the answer in other words."""

    def __init__(self, grammar: Recognizer, aside: Recognizer, least_digits: int, most_digits: int) -> None:
        self._grammar = grammar
        self._aside = aside
        self._least = least_digits
        self._most = most_digits
        self.model = getattr(grammar, "model", "")

    def feed(self, pcm: Pcm) -> AsrResult | None:
        partial = self._grammar.feed(pcm)
        aside = self._aside.feed(pcm)
        return partial if partial is not None else aside

    def finish(self) -> AsrResult:
        try:
            answer = self._grammar.finish()
        finally:
            aside = self._aside.finish()  # always: it returns its decoder to the pool
        words = [w.word for w in aside.words] or aside.text.split()
        if wrapped_answer(words, self._least, self._most):
            return dataclasses.replace(aside, grammar=answer)
        if says_other(words, self._least) and not same_digits(aside.words, answer.words):
            return dataclasses.replace(aside, grammar=answer)
        return answer
