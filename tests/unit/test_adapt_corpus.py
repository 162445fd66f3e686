"""What a flow's open model is estimated from: digit strings as callers say them inside a
request, for a flow whose slots collect digits."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_server.dialog.slots.words import digit_runs
from ivr_server.dialog.spec.loader import check_text, load_flow
from ivr_server.dialog.spec.model import Flow
from ivr_server.speech.adapt.corpus import (
    closed_sentences,
    correction_sentences,
    digit_sentences,
    open_sentences,
    repair_sentences,
)

REPO = Path(__file__).resolve().parents[2]
BANKING = REPO / "flows" / "banking.yaml"


def _as_text(text: str, slot: str) -> str:
    """The banking flow's text with a digits slot made a text slot."""
    changed = re.sub(rf"  {slot}:\n    type: digits\n    length: \d+\n", f"  {slot}:\n    type: text\n", text)
    assert changed != text
    return changed


def _flow(text: str) -> Flow:
    flow, problems = check_text(text, "banking.yaml")
    assert flow is not None, problems
    return flow


def test_a_flow_with_digit_slots_gets_digit_strings_of_their_lengths_in_requests() -> None:
    """The banking flow's 4-, 8- and 10-digit slots: each sentence holds one digit string of
    one of those lengths, said word by word ("oh" for zero in some), after the carriers any
    flow's callers use and inside the flow's own prompts that say the value; reproducibly."""
    flow = load_flow(BANKING)
    sentences = digit_sentences(flow)
    assert sentences == digit_sentences(flow)  # same flow, same resources version
    assert {len(runs[0]) for runs in map(digit_runs, sentences) if len(runs) == 1} == {4, 8, 10}
    assert all(len(digit_runs(s)) == 1 for s in sentences), [s for s in sentences if len(digit_runs(s)) != 1]
    assert all(not any(ch.isdigit() for ch in s) for s in sentences)  # spoken words only
    assert any(" oh " in f" {s} " for s in sentences) and any(" zero " in f" {s} " for s in sentences)
    assert any(s.startswith("ending in ") for s in sentences)
    assert any(s.startswith("the card ending ") and s.endswith(" is blocked") for s in sentences)
    assert not set(sentences) & set(open_sentences(flow))  # kept apart: not the flow's own phrases


def test_a_flow_without_digit_slots_gets_none() -> None:
    text = BANKING.read_text()
    for slot in ("last4", "account", "callback_number"):  # the digit slots, made text slots
        text = _as_text(text, slot)
    flow = _flow(text)
    assert not [s for s in flow.slots.values() if s.type == "digits"]
    assert digit_sentences(flow) == []


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=1, max_value=24))
def test_every_digit_string_has_the_slots_length(length: int) -> None:
    """Whatever length a flow's only digit slot asks for, its strings have it."""
    text = BANKING.read_text().replace("length: 4", f"length: {length}", 1)
    for slot in ("account", "callback_number"):
        text = _as_text(text, slot)
    sentences = digit_sentences(_flow(text))
    assert sentences and all([len(r) for r in digit_runs(s)] == [length] for s in sentences)


def test_closed_questions_also_hear_repairs_and_a_yes_no_the_corrected_digits() -> None:
    """A flow's yes/no corpus has its answers (still the likeliest), the repairs any state
    answers, the flow's own repair phrases, and "no I said ..." with digit strings of its slots'
    lengths; the aside corpus (beside a digit grammar) has the repairs and the digit strings."""
    flow = _flow(BANKING.read_text() + "\nrepair:\n  phrases:\n    hold: [bear with me]\n")
    yes_no = closed_sentences("yesno", flow)
    answers = closed_sentences("yesno")
    assert yes_no[: 2 * len(answers)] == answers * 2
    repairs = repair_sentences(flow)
    assert {"say that again", "cancel that", "go back", "hold on", "bear with me"} <= set(repairs)
    assert set(repairs) <= set(yes_no) and set(repairs) <= set(closed_sentences("amount", flow))
    corrections = correction_sentences(flow)
    assert corrections and set(corrections) <= set(yes_no)
    for sentence in corrections:
        assert sentence.split()[0] in ("no", "nope", "wrong")
        runs = digit_runs(sentence)
        assert len(runs) == 1 and len(runs[0]) in (4, 8, 10), sentence
    aside = closed_sentences("aside", flow)
    assert set(repairs) <= set(aside) and set(digit_sentences(flow)) <= set(aside)
