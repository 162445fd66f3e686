"""The one redaction step: cards (written or spoken), national ids, phones, e-mail, secure values."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_server.privacy.redact import Redactor, SecureValues, luhn_valid
from ivr_server.spoken_numbers import DIGIT_WORDS

SPOKEN = {
    d: w for w, d in reversed(DIGIT_WORDS.items()) if w not in ("to", "too", "for", "o", "oh", "nought")
}


def redact(text: str, *secure: str) -> tuple[str, dict[str, int]]:
    values = SecureValues()
    for value in secure:
        values.add("call", value)
    out = Redactor(values).text(text)
    return out.text, dict(out.found)


def with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@pytest.mark.parametrize(
    ("text", "expected", "found"),
    [
        ("my card is 4111 1111 1111 1111 thanks", "my card is [card] thanks", {"card": 1}),
        ("4111-1111-1111-1111", "[card]", {"card": 1}),
        ("four one one one one one one one one one one one one one one one", "[card]", {"card": 1}),
        (
            "it is for one one one one one one one one one one one one one one one",
            "it is [card]",
            {"card": 1},
        ),
        ("ssn 123-45-6789 please", "ssn [national_id] please", {"national_id": 1}),
        ("NI number AB 12 34 56 C", "NI number [national_id]", {"national_id": 1}),
        ("call me on +1 (555) 123-4567", "call me on +[phone]", {"phone": 1}),
        ("five five five one two three four five six seven", "[phone]", {"phone": 1}),
        ("write to ann.lee+ivr@mail.example.co.uk", "write to [email]", {"email": 1}),
        ("card 4111.1111.1111.1111 ok", "card [card] ok", {"card": 1}),
        ("card 4111_1111_1111_1111", "card [card]", {"card": 1}),
        ("ssn 123456789", "ssn [national_id]", {"national_id": 1}),
        ("one two three four five six seven eight nine", "[national_id]", {"national_id": 1}),
        ("mail john dot smith at example dot com please", "mail [email] please", {"email": 1}),
        ("it's ann underscore lee at mail dot example dot co dot uk", "it's [email]", {"email": 1}),
        ("send it to bob at example.org", "send it to [email]", {"email": 1}),
        ("IBAN GB82 WEST 1234 5698 7654 32 THANKS", "IBAN [iban] THANKS", {"iban": 1}),
        ("DE89370400440532013000", "[iban]", {"iban": 1}),
        ("sort code 20-00-00 account", "sort code [sort_code] account", {"sort_code": 1}),
        ("sortcode: 20 00 00", "sortcode: [sort_code]", {"sort_code": 1}),
        ("my sort code is 200000", "my sort code is 200000", {}),  # six digits, no "sort code" before
        ("born 12/03/1985 in", "born [date_of_birth] in", {"date_of_birth": 1}),
        ("dob 1985-03-12", "dob [date_of_birth]", {"date_of_birth": 1}),
        ("on 12th of March, 1985", "on [date_of_birth]", {"date_of_birth": 1}),
        ("born march twelfth nineteen eighty five", "born [date_of_birth]", {"date_of_birth": 1}),
        (
            "four one one one one one one one one one one one one one one two",
            "[card]",
            {"card": 1},
        ),  # misheard (check digit fails): still a card
        # Not personal data: left as said.
        ("I paid on 03/12/2026 and on March 3rd, 2026", "I paid on 03/12/2026 and on March 3rd, 2026", {}),
        ("may I pay nineteen dollars on june first", "may I pay nineteen dollars on june first", {}),
        ("look at this dot and that", "look at this dot and that", {}),
        ("meet at the bank at nine", "meet at the bank at nine", {}),
        ("GB82 WEST ABCD EFGH IJKL", "GB82 WEST ABCD EFGH IJKL", {}),  # check digits fail
        ("my card ending 4421 is lost", "my card ending 4421 is lost", {}),
        ("transfer one thousand two hundred dollars", "transfer one thousand two hundred dollars", {}),
        ("4111 1111 1111 1112", "[card]", {"card": 1}),  # not Luhn-valid: misheard, still a card
        (
            "call 3f2a6b1c-1234-5678-9012-345678901234 ended",
            "call 3f2a6b1c-1234-5678-9012-345678901234 ended",
            {},
        ),
        ("I want to go for a walk", "I want to go for a walk", {}),
    ],
)
def test_examples(text: str, expected: str, found: dict[str, int]) -> None:
    assert redact(text) == (expected, found)


def test_secure_values_are_masked_longest_first_and_forgotten_with_their_call() -> None:
    values = SecureValues()
    values.add("a", "123456")
    values.add("a", "1234567")
    values.add("b", "12")  # too short to mask without masking ordinary numbers
    r = Redactor(values)
    assert r.text("pin 1234567 or 123456 or 12").text == "pin [secure] or [secure] or 12"
    values.forget("a")
    assert r.text("pin 1234567").text == "pin 1234567"


def test_nested_values_keep_identifiers() -> None:
    found: dict[str, int] = {}
    from collections import Counter

    counter: Counter[str] = Counter()
    out = Redactor(SecureValues()).value(
        {"channel_id": "1732456789.12", "said": ["card 4111111111111111"], "n": 3, "call_id": "5551234567"},
        counter,
    )
    assert out == {"channel_id": "1732456789.12", "said": ["card [card]"], "n": 3, "call_id": "5551234567"}
    assert dict(counter) == {"card": 1} and not found


cards = st.builds(
    lambda prefix, body: with_check_digit(prefix + body),
    st.sampled_from(["4", "51", "37", "6011"]),
    st.text("0123456789", min_size=11, max_size=14),
)
filler = st.text(st.sampled_from("abcdefghij klmnop,.?!"), max_size=30)


@settings(max_examples=300)
@given(
    card=cards, before=filler, after=filler, style=st.sampled_from(["plain", "grouped", "dashed", "spoken"])
)
def test_a_valid_card_never_survives(card: str, before: str, after: str, style: str) -> None:
    if style == "plain":
        said = card
    elif style == "grouped":
        said = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    elif style == "dashed":
        said = "-".join(card[i : i + 4] for i in range(0, len(card), 4))
    else:
        said = " ".join(SPOKEN[d] for d in card)
    text, found = redact(f"{before} {said} {after}")
    assert card not in text.replace(" ", "").replace("-", "")
    assert found.get("card") == 1


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_any_text_redacts_without_error_and_redacting_again_changes_nothing(text: str) -> None:
    once, _ = redact(text, "s3cr3t-value")
    assert "s3cr3t-value" not in once
    assert redact(once, "s3cr3t-value")[0] == once


def test_words_only_text_is_untouched() -> None:
    rng = random.Random(7)
    words = ["balance", "lost", "card", "agent", "please", "one", "two", "for", "to"]
    for _ in range(200):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        assert redact(text) == (text, {}) or sum(w in SPOKEN.values() for w in text.split()) >= 10


def test_text_longer_than_a_piece_is_redacted_whole_with_nothing_lost() -> None:
    from ivr_server.privacy.redact import MAX_TEXT

    filler = "word " * (MAX_TEXT // 5 - 3)  # a card straddles the first piece's limit
    text = filler + "4111 1111 1111 1111 then more " + "x" * (MAX_TEXT + 10) + " ssn 123-45-6789"
    out, found = redact(text)
    assert out == filler + "[card] then more " + "x" * (MAX_TEXT + 10) + " ssn [national_id]"
    assert found == {"card": 1, "national_id": 1}


@settings(max_examples=200)
@given(st.text(st.sampled_from("0123456789 .-_@/abcdefghijklmnoptuvwxyzABDEGJ"), max_size=400))
def test_separator_heavy_text_redacts_and_stays_stable(text: str) -> None:
    once, _ = redact(text)
    assert redact(once)[0] == once
