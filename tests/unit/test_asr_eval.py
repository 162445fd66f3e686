"""Word error counting and text normalisation for ASR evaluation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ivr_server.speech.asr.evaluate import DIGIT_SYNONYMS, normalize, word_errors

words = st.lists(st.sampled_from(["one", "two", "three", "card", "lost"]), max_size=8)


def test_known_distances() -> None:
    assert word_errors("a b c".split(), "a b c".split()) == 0
    assert word_errors("a b c".split(), "a x c".split()) == 1  # substitution
    assert word_errors("a b c".split(), "a c".split()) == 1  # deletion
    assert word_errors("a b c".split(), "a b b c".split()) == 1  # insertion
    assert word_errors([], "a b".split()) == 2
    assert word_errors("i lost my card".split(), "i watch my part".split()) == 2


@given(words, words)
def test_distance_is_a_metric_bounded_by_the_longer(a: list[str], b: list[str]) -> None:
    d = word_errors(a, b)
    assert d == word_errors(b, a)
    assert (d == 0) == (a == b)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))


@given(words, words, words)
def test_triangle_inequality(a: list[str], b: list[str], c: list[str]) -> None:
    assert word_errors(a, c) <= word_errors(a, b) + word_errors(b, c)


def test_normalisation() -> None:
    assert normalize("I'd like: one, TWO -- three!") == ["i'd", "like", "one", "two", "three"]
    assert normalize("oh seven", DIGIT_SYNONYMS) == ["zero", "seven"]
    assert normalize("하나 둘") == ["하나", "둘"]
