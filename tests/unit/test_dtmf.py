"""DTMF collection: pure logic with times passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.dialog.dtmf import DtmfCollector, digit_prompt


def collector(**kw: float) -> DtmfCollector:
    args = {"started_at": 100.0, "first_digit_timeout_s": 5.0, "inter_digit_timeout_s": 3.0, "max_digits": 4}
    args.update(kw)
    return DtmfCollector(**args)  # type: ignore[arg-type]


def test_terminator_ends_collection_and_is_not_a_digit() -> None:
    c = collector()
    assert c.feed("1", 101) is None and c.feed("2", 102) is None
    result = c.feed("#", 103)
    assert result is not None and (result.digits, result.reason) == ("12", "terminator")


def test_max_digits_ends_collection() -> None:
    c = collector(max_digits=3)
    for i, key in enumerate("123"):
        result = c.feed(key, 101 + i)
    assert result is not None and (result.digits, result.reason) == ("123", "max_digits")


def test_no_input_after_the_first_digit_timeout() -> None:
    c = collector()
    assert c.deadline() == 105.0
    assert c.expire(104.9) is None
    result = c.expire(105.0)
    assert result is not None and (result.digits, result.reason) == ("", "no_input")


def test_inter_digit_timeout_takes_what_was_typed() -> None:
    c = collector()
    c.feed("7", 102)
    assert c.deadline() == 105.0  # 102 + 3
    result = c.expire(105.1)
    assert result is not None and (result.digits, result.reason) == ("7", "timeout")


def test_a_key_after_the_deadline_does_not_count() -> None:
    c = collector()
    result = c.feed("9", 106)
    assert result is not None and result.reason == "no_input" and result.digits == ""


def test_letters_are_ignored_and_star_is_a_digit() -> None:
    c = collector()
    c.feed("A", 101)
    c.feed("*", 101.5)
    result = c.feed("#", 102)
    assert result is not None and result.digits == "*" and c.ignored == "A"


def test_digit_prompts() -> None:
    assert digit_prompt("0") == "digit_0" and digit_prompt("*") == "digit_star"
    with pytest.raises(ValueError):
        digit_prompt("#")


@given(
    st.lists(st.sampled_from("0123456789*#ABCD"), max_size=30),
    st.lists(st.floats(0.0, 4.0), min_size=30, max_size=30),
)
def test_result_is_the_digits_typed_before_the_end(keys: list[str], gaps: list[float]) -> None:
    """Whatever the keys and timing, the result is the digits typed (in order) before the
    terminator, the limit or a timeout, and collection ends exactly once."""
    c = collector(max_digits=6)
    now, expected = 100.0, ""
    for key, gap in zip(keys, gaps, strict=False):
        now += gap
        if c.result is None and now < c.deadline():
            if key == "#":
                c.feed(key, now)
                break
            if key in "0123456789*":
                expected += key
        c.feed(key, now)
    result = c.result or c.expire(now + 100)
    assert result is not None and result.digits == expected[:6]
