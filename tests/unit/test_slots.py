"""Slot parsers: what a caller says or keys becomes a value, or a reason it is not one."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.dialog.slots.parsers import entities, luhn_ok, parse, parse_heard
from ivr_server.dialog.slots.words import digit_runs, number_value
from ivr_server.dialog.spec.model import Slot

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LAST4 = Slot("last4", "digits", length=4)
CARD = Slot("card", "card_number")
TODAY = dt.date(2026, 11, 24)


@pytest.mark.parametrize(
    ("said", "keyed", "value", "reason"),
    [
        ("four four two one", "", "4421", None),
        ("it's 4 4 2 1", "", "4421", None),
        ("double four two one", "", "4421", None),
        ("my card ending in for four to one", "", "4421", None),  # as PocketSphinx heard it in a call
        ("I want to go", "", None, "no digits heard"),
        ("four four", "", None, "need 4 digits, heard 2"),
        ("", "4421", "4421", None),
        ("", "44", None, "need 4 digits, heard 2"),
        ("hello there", "", None, "no digits heard"),
    ],
)
def test_digits_of_a_length(said: str, keyed: str, value: str | None, reason: str | None) -> None:
    got = parse(LAST4, said, keyed)
    assert (got.value, got.reason) == (value, reason)


@given(st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_digits_said_one_by_one_come_back_whatever_they_are(digits: str) -> None:
    said = " ".join(NAMES[int(d)] for d in digits)
    assert digit_runs(said) == [digits]
    assert parse(Slot("d", "digits", length=len(digits)), said).value == digits


def _with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.integers(0, 17), st.integers(1, 9))
def test_a_card_number_needs_its_check_digit(body: str, at: int, bump: int) -> None:
    card = _with_check_digit(body)
    assert parse(CARD, keyed=card).value == card
    i = at % len(card)
    wrong = card[:i] + str((int(card[i]) + bump) % 10) + card[i + 1 :]
    assert parse(CARD, keyed=wrong).reason == "the card number's check digit is wrong"


def test_card_numbers_spoken_and_of_a_wrong_length() -> None:
    assert (
        parse(CARD, "four one one one one one one one one one one one one one one one").value
        == "4" + "1" * 15
    )
    assert parse(CARD, "one two three").reason == "a card number has 13 to 19 digits, heard 3"


@pytest.mark.parametrize(
    ("said", "keyed", "value"),
    [("yes please", "", "yes"), ("yeah that's right", "", "yes"), ("no it isn't", "", "no"), ("", "1", "yes"),
     ("", "2", "no"), ("maybe", "", None), ("yes no", "", None), ("that's not right", "", "no"),
     ("that is not correct", "", "no"), ("that isn't right", "", "no"), ("not really", "", "no"),
     ("yes that's right", "", "yes"), ("right", "", "yes"), ("yes that's not right", "", None)],
)  # fmt: skip
def test_yes_or_no(said: str, keyed: str, value: str | None) -> None:
    """A yes word after a negation ("that's not right") is a no, not a contradiction."""
    assert parse(Slot("ok", "yes_no"), said, keyed).value == value


@pytest.mark.parametrize(
    ("kind", "said", "keyed", "value"),
    [
        ("number", "one hundred and twenty three", "", "123"),
        ("number", "two thousand five hundred", "", "2500"),
        ("number", "twelve point five", "", "12.5"),
        ("amount", "twelve dollars and fifty cents", "", "12.50"),
        ("amount", "one hundred dollars", "", "100.00"),
        ("amount", "", "12*5", "12.50"),
        ("amount", "a lot", "", None),
    ],
)
def test_numbers_and_amounts(kind: str, said: str, keyed: str, value: str | None) -> None:
    assert parse(Slot("n", kind), said, keyed).value == value


@given(st.integers(0, 999_999))
def test_written_numbers_read_as_themselves(n: int) -> None:
    assert number_value(str(n)) == n


@pytest.mark.parametrize(
    ("said", "keyed", "value"),
    [
        ("tomorrow", "", "2026-11-25"),
        ("march the fifth", "", "2026-03-05"),
        ("the twenty first of june 2027", "", "2027-06-21"),
        ("5th of july", "", "2026-07-05"),
        ("", "05032026", "2026-03-05"),
        ("february thirtieth", "", None),
        ("soon", "", None),
    ],
)
def test_dates(said: str, keyed: str, value: str | None) -> None:
    assert parse(Slot("d", "date"), said, keyed, today=TODAY).value == value


def test_free_text_and_nothing() -> None:
    assert parse(Slot("t", "text"), "  my  address changed ").value == "my address changed"
    assert parse(Slot("t", "text"), "").reason == "nothing was said"


def test_entities_in_the_first_utterance_fill_only_unambiguous_slots() -> None:
    assert entities([LAST4], "I lost my card ending four four two one") == {"last4": "4421"}
    assert entities([LAST4], "I lost my card") == {}
    assert entities([LAST4], "card 1234 or maybe 5678") == {}  # two candidates: ask
    card = _with_check_digit("411111111111111")
    assert entities([CARD, LAST4], f"my card number is {card}") == {"card": card}


def test_an_answer_the_other_hypotheses_agree_on_is_not_lost() -> None:
    """The best hypothesis decides when it parses; when it does not ("yes not right"), the value
    every parseable alternative agrees on; disagreeing alternatives decide nothing."""
    ok = Slot("ok", "yes_no")
    assert parse_heard(ok, "yes not right", ["yes that's right", "yes that right"]).value == "yes"
    assert parse_heard(ok, "no", ["yes"]).value == "no"  # the best one parses: it decides
    split = parse_heard(ok, "eyes", ["yes", "no"])
    assert split.value is None and split.reason == parse(ok, "eyes").reason
    assert parse_heard(ok, "eyes", []).value is None
    assert parse_heard(ok, "eyes", ["yes"], keyed="2").value == "no"  # keys are never second-guessed
    # words with neither a yes nor a no ("forget it" heard "get that") never become a yes; a no
    # (which only asks again) may come from the others ("uh no" heard "on oh")
    assert parse_heard(ok, "get that", ["yes that", "yes that's"]).value is None
    assert parse_heard(ok, "on oh", ["no", "no oh"]).value == "no"
    four = Slot("last4", "digits", length=4)
    assert (
        parse_heard(four, "four four two", ["four four two one", "maybe four four two one"]).value == "4421"
    )


SLOT_TYPES = ["digits", "card_number", "yes_no", "number", "amount", "date", "text"]
number_words = st.sampled_from(
    ["one", "nine", "twenty", "hundred", "thousand", "million", "point", "and", "dollars", "cents", "oh"]
)
said_texts = st.one_of(
    st.text(max_size=200),
    st.lists(number_words | st.from_regex(r"\d{1,30}(\.\d{1,30})?", fullmatch=True), max_size=60).map(
        " ".join
    ),
)


@given(st.sampled_from(SLOT_TYPES), st.integers(1, 20), said_texts, st.text("0123456789*#", max_size=40))
def test_every_slot_parser_gives_a_value_or_a_reason_never_an_exception(
    kind: str, length: int, said: str, keyed: str
) -> None:
    slot = Slot("s", kind, length=length if kind == "digits" else None)
    for got in (parse(slot, said), parse(slot, "", keyed), parse_heard(slot, said, [said[:10], keyed])):
        assert (got.value is None) != (got.reason is None)


@pytest.mark.parametrize(
    ("said", "keyed"),
    [
        ("9" * 5000, ""),  # over Python's 4300-digit int() limit
        ("1" + "0" * 400, ""),  # past a float
        ("$" + "9" * 5000 + ".50", ""),
        ("", "9" * 5000),
    ],
)
def test_a_number_with_thousands_of_digits_is_too_large_not_a_crash(said: str, keyed: str) -> None:
    for kind in ("number", "amount"):
        assert parse(Slot("n", kind), said, keyed).reason == "that number is too large"


def test_korean_digits_said_one_by_one_and_yes_no_in_korean() -> None:
    """Vosk's Korean model writes digits as Sino-Korean syllables, one word each."""
    four = Slot("last4", "digits", length=4)
    assert parse(four, "사 사 이 일").value == "4421"
    assert parse(four, "끝자리는 공 일 구 팔 이에요").value == "0198"
    assert parse(four, "사 사 이").value is None  # three digits: not the four asked for
    yes_no = Slot("ok", "yes_no")
    assert parse(yes_no, "네").value == "yes" and parse(yes_no, "네 맞아").value == "yes"
    assert parse(yes_no, "아니요").value == "no" and parse(yes_no, "아닙니다").value == "no"
    assert parse(yes_no, "네 아니요").value is None  # both: asked again
