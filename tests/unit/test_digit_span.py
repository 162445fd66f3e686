"""Where a digit string was said inside a request, from the open model's words."""

from __future__ import annotations

import pytest

from ivr_server.speech.asr.digit_span import Stretch, digit_stretch


@pytest.mark.parametrize(
    ("heard", "lengths", "stretch"),
    [
        # digits heard whole: nothing to hear again
        ("my card ending in four five eight five was stolen", (4,), None),
        ("account one two three four five six seven eight please", (4, 8), None),
        # a digit word misheard between others ("speak" for "eight"); widened to four words
        ("my card ending and for five speak five was stolen", (4,), Stretch(4, 7, 4)),
        # three digits heard: widened by a word after, then one before
        ("the card that ends in nine three always", (4,), Stretch(4, 7, 4)),
        ("a lost card and the i seven four four", (4,), Stretch(5, 8, 4)),
        # the nearest length the flow's slots take: seven digit words, an 8-digit account
        ("account two four six eight one three five please", (4, 8), Stretch(1, 8, 8)),
        # one digit word is not a digit string ("one" in "card one ending" neither)
        ("i have one card", (4,), None),
        ("my card one ending to the", (4,), None),
        # "oh" is also just "oh": "about a charge" heard as "about it charge oh one"
        ("i'd like to speak to someone about it charge oh one of the speak", (4, 8), None),
        ("i lost my card and nine three oh always", (4,), Stretch(5, 8, 4)),
        # no digit slot in the flow, or no words
        ("four five eight", (), None),
        ("", (4,), None),
    ],
)
def test_the_stretch_to_hear_again(heard: str, lengths: tuple[int, ...], stretch: Stretch | None) -> None:
    assert digit_stretch(heard.split(), lengths) == stretch


def test_the_widening_stops_at_the_edges_of_the_sentence() -> None:
    assert digit_stretch(["four", "two"], (4,)) == Stretch(0, 1, 4)
    assert digit_stretch(["oh", "four", "two", "six"], (8,)) is not None
