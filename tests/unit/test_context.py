"""The call's context: what it records, and the conditions a flow can put on it."""

from __future__ import annotations

import pytest

from ivr_server.dialog.context import KEYS, CallContext, condition_problem, frustration_in, holds


def test_a_turn_updates_what_the_call_knows() -> None:
    clock = [100.0]
    c = CallContext(clock=lambda: clock[0])
    c.heard("I lost my card", "en", 0.8, barge_in=True, energy_dbfs=-30.04)
    c.heard("this is RIDICULOUS, I already told you", "en", 0.4, barge_in=False, energy_dbfs=-9.0)
    clock[0] = 142.5
    assert (c.turns, c.barge_ins, c.confidence, c.energy_dbfs) == (2, 1, 0.4, -9.0)
    assert c.frustrated and c.loud and c.seconds == 42.5
    assert c.frustration_words == ["ridiculous", "i already told you"]
    recorded = c.as_dict()
    assert set(recorded) == set(KEYS) and recorded["frustrated"] is True  # the words themselves are not kept


def test_frustration_is_whole_words_in_the_callers_language() -> None:
    assert frustration_in("that's stupidly simple", "en") == []  # "stupid" inside a word is not it
    assert frustration_in("정말 짜증 나요", "ko") == ["짜증"]
    assert frustration_in("ridiculous", "ko") == []


@pytest.mark.parametrize(
    ("key", "wanted", "value", "expected"),
    [
        ("no_matches", ">= 2", 2, True),
        ("no_matches", ">= 2", 1, False),
        ("confidence", "< 0.5", 0.3, True),
        ("confidence", "< 0.5", None, False),  # nothing heard yet: no comparison holds
        ("seconds", "> 60", 61.0, True),
        ("barge_ins", "2", 2, True),
        ("frustrated", True, True, True),
        ("frustrated", False, True, False),
    ],
)
def test_conditions_hold_as_written(key: str, wanted: str | bool, value: object, expected: bool) -> None:
    clock = [0.0]
    c = CallContext(clock=lambda: clock[0])
    if key == "seconds":
        clock[0] = float(value)  # type: ignore[arg-type]
    else:
        setattr(c, key, value)
    assert holds(c, key, wanted) is expected


def test_repairs_are_counted_from_the_sessions_own_list() -> None:
    log: list[tuple[str, str, str]] = []
    c = CallContext(log)
    log.append(("welcome", "repeat", "asked: what"))
    assert c.repairs == 1 and c.as_dict()["repairs"] == 1


def test_a_wrong_condition_says_what_is_allowed() -> None:
    assert condition_problem("no_matches", ">= 2") is None and condition_problem("loud", True) is None
    assert "unknown context 'ctx.mood'" in (condition_problem("mood", True) or "")
    assert "is true or false" in (condition_problem("frustrated", "yes") or "")
    assert "is not a comparison" in (condition_problem("no_matches", "at least 2") or "")
    assert "takes a number" in (condition_problem("seconds", [1]) or "")
