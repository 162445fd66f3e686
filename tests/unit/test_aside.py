"""When the words heard beside a digit grammar are something other than the digits."""

from __future__ import annotations

import pytest

from ivr_server.speech.asr.aside import same_digits, says_other, wrapped_answer
from ivr_server.speech.asr.base import WordTiming


@pytest.mark.parametrize(
    ("heard", "least", "other"),
    [
        ("cancel that", 4, True),
        ("repeat", 4, True),
        ("how much money two why have", 4, True),  # one digit word in a request
        ("oh and what's my balance", 4, True),  # "oh" is a digit word, but only one
        ("four four two one", 4, False),
        ("it's four four two one", 4, False),  # a carrier before the digits: still the answer
        ("or for to one", 4, False),  # digits said quickly, heard as words that sound like them
        ("nine three go wait", 4, False),  # half the digits: the grammar's answer is likelier
        ("the", 4, False),  # a slight word in line noise is not a request
        ("i four i say it", 4, False),  # one word beside a digit: a misheard digit string
        ("one moment", 4, False),  # the price of that rule: a hold said with a digit word
        ("hang on a second", 4, True),
        ("", 4, False),
        ("one two three my account", 8, True),  # fewer than half of eight digits
        ("one two three four five my account", 8, False),
        ("help", 1, True),
        ("oh one what's my balance first", 4, True),  # two digit words, but more words of a request
        ("the two transfer me two customer service agent", 4, True),
        ("it's want that one three three", 4, False),  # as many digits as other words: the answer
    ],
)
def test_words_other_than_the_answer(heard: str, least: int, other: bool) -> None:
    assert says_other(heard.split(), least) is other


@pytest.mark.parametrize(
    ("heard", "least", "most", "wrapped"),
    [
        ("it's one seven three three", 4, 4, True),
        ("yes nine eight eight four", 4, 4, True),
        ("um two six zero two seven eight five three", 8, 8, True),  # a slight word is a wrapper too
        ("one seven three three", 4, 4, False),  # digits alone: the grammar's and its digit model's
        ("it's one seven three", 4, 4, False),  # a digit short: the grammar may have heard it
        ("card one two three four five six", 4, 4, False),  # too many for the string
        ("one two three four five six", 4, 6, False),
        ("my card ends in one two three four five", 4, 6, True),
        ("to a six eight eight want", 4, 4, False),
        ("", 4, 4, False),
    ],
)
def test_an_answer_in_other_words(heard: str, least: int, most: int, wrapped: bool) -> None:
    assert wrapped_answer(heard.split(), least, most) is wrapped


def _timed(text: str, step_s: float = 0.5, start_s: float = 0.0) -> list[WordTiming]:
    """Words one after another, ``step_s`` each."""
    return [
        WordTiming(w, start_s + i * step_s, start_s + (i + 1) * step_s) for i, w in enumerate(text.split())
    ]


def test_aside_words_that_are_the_grammars_digits_misheard() -> None:
    """Three of the aside's digit words are the grammar's own digits over the same audio: the
    other words are digits misheard (bench-ab's account read out with pauses), not a request."""
    grammar = _timed("two four six eight one three five seven")
    assert same_digits(_timed("is are have a one three that's seven"), grammar)
    # word edges differ between the two searches: a digit over part of the same audio still counts
    assert same_digits(_timed("is are have a one three that's seven", start_s=0.2), grammar)
    # two shared digits are not enough
    assert not same_digits(_timed("is are have a one three that's eleven"), grammar)
    # the same digits at other moments: the caller said something else around them
    assert not same_digits(_timed("one three seven what's my balance", step_s=0.3), grammar)
    # more words than the answer has digits, and one: a sentence
    assert not same_digits(
        _timed("one three five seven is my account number please"), _timed("one three five seven")
    )
    assert not same_digits(_timed("one three five"), [])
