"""Flow-adapted recognition, the pure parts: spoken forms, ARPA back-off, interpolation."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_server.errors import ResourceError
from ivr_server.speech.adapt.arpa import ArpaModel, read_arpa, write_arpa
from ivr_server.speech.adapt.mix import interpolate
from ivr_server.speech.adapt.words import number_words, spoken, spoken_words

# A hand-made back-off model: P(b|a) listed, P(c|a) by back-off.
TINY = """\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-99\t<s>\t-0.30103
-0.60206\ta\t-0.1
-0.60206\tb\t0.0
-0.60206\tc\t0.0
-0.60206\t</s>\t0.0

\\2-grams:
-0.30103\t<s> a
-0.1\ta b
-0.5\tb </s>

\\end\\
"""


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("I was charged $25 twice!", "i was charged twenty five dollars twice"),
        ("Top-up of 1,500 pounds", "top up of one thousand five hundred pounds"),
        ("my 3rd card, 21st of May", "my third card twenty first of may"),
        ("account 00123456", "account zero zero one two three four five six"),
        ("20% fee", "twenty percent fee"),
        ("I can’t find it", "i can't find it"),
        ("Apple Pay & Google Pay", "apple pay and google pay"),
        ("12345678901234", "one two three four five six seven eight nine zero one two three four"),
    ],
)
def test_written_text_becomes_the_words_a_caller_says(text: str, said: str) -> None:
    """Numbers are spelled out (long ones digit by digit), signs become words, the apostrophes
    the dictionary has stay, hyphens split."""
    assert spoken(text) == said


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_any_text_gives_lower_case_words_and_never_raises(text: str) -> None:
    """Whatever the text (any script, digits, symbols), the words are ones the English
    dictionary could hold: a-z with inner apostrophes."""
    for word in spoken_words(text):
        assert re.fullmatch(r"[a-z]+('[a-z]+)*", word), word


@given(st.integers(min_value=0, max_value=999_999_999))
def test_every_number_is_spelled_in_words(n: int) -> None:
    words = number_words(n).split()
    assert words and all(w.isalpha() for w in words)


def test_backoff_follows_the_arpa_rule(tmp_path: Path) -> None:
    """Listed bigrams are read as listed; an unlisted one is bow(history) + P(word)."""
    path = tmp_path / "tiny.arpa"
    path.write_text(TINY)
    model = read_arpa(path)
    assert model.logprob(("a", "b")) == pytest.approx(-0.1)
    assert model.logprob(("a", "c")) == pytest.approx(-0.1 + -0.60206)
    assert model.logprob(("b", "c")) == pytest.approx(0.0 + -0.60206)
    # P(<s> a b </s>) = P(a|<s>) P(b|a) P(</s>|b)
    assert model.sentence_logprob(["a", "b"]) == pytest.approx(-0.30103 - 0.1 - 0.5)


def test_a_model_round_trips_through_its_file(tmp_path: Path) -> None:
    (tmp_path / "a.arpa").write_text(TINY)
    model = read_arpa(tmp_path / "a.arpa")
    write_arpa(model, tmp_path / "b.arpa")
    again = read_arpa(tmp_path / "b.arpa")
    assert again.grams.keys() == model.grams.keys()
    for n in model.grams:
        for words, (p, bow) in model.grams[n].items():
            assert again.grams[n][words] == pytest.approx((p, bow), abs=1e-6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\n", "expected a 1-gram entry"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\nx word 0\n", "not a number"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0 a\n\\end\\\n", "header says 2 1-grams"),
        ("just text\n", "no n-gram sections"),
    ],
)
def test_a_broken_model_file_is_named_with_its_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(ResourceError, match=expected) as err:
        read_arpa(path)
    assert str(path) in str(err.value)


def _total(model: ArpaModel, history: tuple[str, ...]) -> float:
    words = [w for w in model.vocabulary if w != "<s>"]
    return sum(10 ** model.logprob((*history, w)) for w in words)


def _uniform_background(vocabulary: list[str]) -> object:
    def logprob(words: tuple[str, ...]) -> float:
        return math.log10(1 / len(vocabulary)) if words[-1] != "<s>" else -99.0

    return logprob


corpora = st.lists(
    st.lists(st.sampled_from(["yes", "no", "my", "card", "lost", "balance"]), min_size=1, max_size=5),
    min_size=1,
    max_size=12,
)


@given(corpora, st.floats(min_value=0.05, max_value=1.0))
@settings(max_examples=60, deadline=None)
def test_the_mixed_model_sums_to_one_in_every_context(sentences: list[list[str]], weight: float) -> None:
    """Whatever the corpus and the weight, every history's distribution over the vocabulary
    sums to one: interpolation and the recomputed back-off weights keep it a model."""
    flow = ArpaModel(2)
    counts: dict[tuple[str, ...], int] = {}
    for s in sentences:
        seq = ("<s>", *s, "</s>")
        for i in range(1, len(seq)):
            counts[seq[i - 1 : i + 1]] = counts.get(seq[i - 1 : i + 1], 0) + 1
    words = sorted({w for s in sentences for w in s} | {"</s>"})
    flow.grams[1] = {(w,): (math.log10(1 / len(words)), 0.0) for w in words}
    flow.grams[1][("<s>",)] = (-99.0, 0.0)
    for (h, w), c in counts.items():
        total = sum(v for (h2, _), v in counts.items() if h2 == h)
        flow.grams[2][(h, w)] = (math.log10(0.5 * c / total), 0.0)
    extra = ["actually", "someone"]
    vocabulary = [*words, *extra]
    mixed = interpolate(flow, _uniform_background(vocabulary), weight, extra)  # type: ignore[arg-type]
    for history in [(), ("<s>",), *[(w,) for w in words if w != "</s>"]]:
        assert _total(mixed, history) == pytest.approx(1.0, abs=1e-6)
    if weight < 1.0:  # words outside the flow come through
        assert all(mixed.logprob(("<s>", w)) > -20 for w in extra)


def test_a_weight_outside_0_1_is_refused() -> None:
    with pytest.raises(ResourceError, match="interpolation weight"):
        interpolate(ArpaModel(1), lambda w: -1.0, 1.5)
