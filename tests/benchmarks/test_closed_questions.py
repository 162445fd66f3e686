"""scripts/bench-closed-questions's code apart from speech: the sentences and their halves, what
the engine does with words heard at each closed question (its own repair, slot and decision
functions), the score from hand-made recognition results, and the page."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np

from benchmarks import closed_questions
from benchmarks.banking_speech import BANKING
from ivr_server.dialog.slots.words import digit_runs
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.evaluation import closed
from ivr_server.evaluation.closed import ClosedItem
from ivr_server.evaluation.spoken import Recognized, Recording
from ivr_server.speech.asr.base import Alternative, AsrResult

LAST4, ACCOUNT, CONFIRM = closed_questions.QUESTIONS
FLOW = load_flow(BANKING)


class NoModel:
    """An intent model that guesses nothing: the flow's keywords and patterns decide."""

    def guesses(self, text: str) -> list[Any]:
        return []


def _outcome(question: closed.Question, heard: str, alternatives: tuple[str, ...] = ()) -> str:
    return closed.outcome(question, FLOW, heard, alternatives, 0.9, NoModel())  # type: ignore[arg-type]


def test_the_sentences_are_the_same_every_run_and_the_halves_share_none() -> None:
    """Digits drawn from the seed, said as words of the slot's length; every question and
    category has 10 to 16 sentences, split evenly between halves with none in common."""
    items = closed_questions.items()
    assert items == closed_questions.items()
    assert items != closed_questions.items(seed=1)
    for item in items:
        assert not any(ch.isdigit() for ch in item.text), item
        if item.expected.startswith(("digits:", "correction:")):
            digits = item.expected.split(":")[1]
            assert len(digits) == FLOW.slots[item.question.slot].length
            assert digits in "".join(digit_runs(item.text)), item
    halves = closed_questions.halves(items)
    assert not {(i.question, i.text) for i in halves["dev"]} & {(i.question, i.text) for i in halves["test"]}
    for question in closed_questions.QUESTIONS:
        for category in closed.CATEGORIES:
            sizes = [sum(i.question == question and i.category == category for i in halves[h])
                     for h in ("dev", "test")]  # fmt: skip
            assert sizes[0] == sizes[1] and (sizes[0] == 0 or 5 <= sizes[0] <= 8), (question, category)


def test_each_sentence_but_the_digressions_is_served_on_its_own_words_by_the_rules() -> None:
    """The ceiling: with the words said, the engine does what the caller meant (digressions need
    the intent model, the run reports them); a digression is never a valid answer."""
    for item in closed_questions.items():
        got = _outcome(item.question, item.text)
        if item.category == "digression":
            assert not got.startswith("digits:"), item
        else:
            assert closed.right(item, got), (item, got)


def test_what_the_engine_does_at_a_digit_question() -> None:
    assert _outcome(LAST4, "four four two one") == "digits:4421"
    assert _outcome(LAST4, "two four") == "none"  # too short: asked again
    assert _outcome(LAST4, "sorry cancel it please") == "repair:cancel"
    assert _outcome(LAST4, "um what's my balance") == "task:balance"  # its keyword
    assert _outcome(LAST4, "I lost my card") == "none"  # the question's own task
    assert _outcome(ACCOUNT, "I lost my card") == "task:lost_card"
    assert _outcome(ACCOUNT, "eight two") == "none"
    # the best hypothesis has no answer, the others agree on one
    assert _outcome(LAST4, "for to", ("four four two one", "four four two one")) == "digits:4421"


def test_words_that_mean_nothing_at_a_digit_question_give_way_to_the_grammars_digits() -> None:
    def heard(words: str, grammar: str) -> str:
        return closed.outcome(LAST4, FLOW, words, (), 0.9, NoModel(), grammar)  # type: ignore[arg-type]

    assert heard("that ends size six nine", "seven five six nine") == "digits:7569"
    assert heard("sorry cancel it please", "one two three four") == "repair:cancel"  # words first
    assert heard("um what's my balance", "one two three four") == "task:balance"
    assert heard("next park is to", "six four two") == "none"  # the grammar's is no answer either
    # more words than one per digit, give or take one: a sentence, not the digits misheard
    assert heard("goodbye focus callback of afternoon", "two five four seven") == "digits:2547"
    assert heard("um give me a real put on come talk to", "five eight nine three") == "none"

    def at_account(words: str, grammar: str) -> str:
        return closed.outcome(ACCOUNT, FLOW, words, (), 0.9, NoModel(), grammar)  # type: ignore[arg-type]

    # a slot used without a read-back never takes the grammar's guess
    assert at_account("that ends size six nine", "one two three four five six seven eight") == "none"


def test_what_the_engine_does_at_a_confirmation() -> None:
    assert _outcome(CONFIRM, "yes") == "yes"
    assert _outcome(CONFIRM, "nope") == "no"
    assert _outcome(CONFIRM, "no it's five six seven eight") == "correction:5678"
    assert _outcome(CONFIRM, "yes five six seven eight") == "yes"
    assert _outcome(CONFIRM, "no five six") == "no"  # not a whole value: a plain no
    assert _outcome(CONFIRM, "hold on") == "repair:hold"
    assert _outcome(CONFIRM, "") == "none"


def test_digits_alone_are_digit_words_and_nothing_else() -> None:
    assert closed.digits_alone("four oh two one") and closed.digits_alone("zero zero")
    assert not closed.digits_alone("it's four four two one") and not closed.digits_alone("")


def test_asking_for_a_person_by_name_counts_as_the_agent_task() -> None:
    item = ClosedItem("put me through to a representative", LAST4, "digression", "task:agent")
    assert closed.right(item, "repair:agent") and closed.right(item, "task:agent")
    assert not closed.right(item, "task:balance")


def _heard(text: str, index: int, alternatives: tuple[str, ...] = ()) -> Recognized:
    rec = Recording("", str(index), np.zeros(8, np.int16), 8000, "piper:joe-us:1")
    alts = tuple(Alternative(t, -1.0) for t in (text, *alternatives)) if alternatives else ()
    return Recognized(rec, AsrResult(text, True, "test", "test", confidence=0.9, alternatives=alts), 0.0)


def test_the_score_per_question_and_category_and_overall() -> None:
    """Heard right, misheard as digits, a correction heard as a no: shares per cell, the
    ceiling from the words said, the misheard with what the engine did, answers apart."""
    items = [
        *closed.closed_items((("{digits}", "answer", "digits"),), LAST4, 4, random.Random(3)),
        ClosedItem("cancel it please", LAST4, "repair", "repair:cancel"),
        ClosedItem("what's my balance first", LAST4, "digression", "task:balance"),
        ClosedItem("no it's five six seven eight", CONFIRM, "correction", "correction:5678"),
    ]
    heard = [
        _heard(items[0].text, 0),
        _heard("cancel it please", 1),
        _heard("one one", 1),
        _heard("what's my balance first", 2),
        _heard("two one one eight", 2),
        _heard("no it's five six", 3),
    ]
    scored = closed.score(items, heard, FLOW, NoModel())  # type: ignore[arg-type]
    assert scored["recordings"] == 6
    assert scored["answers"] == 1.0 and scored["others"] == round(2 / 5, 4)
    last4 = scored["questions"]["last4"]
    misheard = {"voice": "piper:joe-us:1", "said": "cancel it please", "heard": "one one", "got": "none"}
    assert last4["repair"] == {
        "recordings": 2,
        "failed": 0,
        "right": 0.5,
        "text": 1.0,
        "mistakes": [misheard],
    }
    assert last4["digression"]["mistakes"][0]["got"] == "digits:2118"
    assert last4["answer"]["alone"] == {"recordings": 1, "right": 1.0} and "alone" not in last4["repair"]
    assert scored["questions"]["confirm_last4"]["correction"]["right"] == 0.0
    assert set(last4) == {"answer", "repair", "digression"}


class Silence:
    def render(self, voice: Any, text: str) -> tuple[Any, int]:
        return np.zeros(1600, np.int16), 8000


class Resources:
    models: dict[str, Any] = {}

    def model(self, kind: str | None) -> None:
        return None


class Broken:
    """Hears "yes" at a confirmation; raises at a digit question (given the digit words)."""

    name = "broken"

    def recognizer(self, rate: int, phrases: Any = None, model: Any = None) -> Any:
        return BrokenRecognizer("four" in (phrases or ()))


class BrokenRecognizer:
    def __init__(self, digits: bool) -> None:
        self.digits = digits

    def feed(self, pcm: Any) -> None:
        return None

    def finish(self) -> AsrResult:
        if self.digits:
            raise ValueError("zip() argument 2 is longer than argument 1")
        return AsrResult("yes", True, "broken", "test")


def test_each_sentence_is_heard_by_two_voices_and_a_failed_recognition_as_nothing() -> None:
    items = [ClosedItem("um cancel please", LAST4, "repair", "repair:cancel"),
             ClosedItem("yes it is", CONFIRM, "answer", "yes")]  # fmt: skip
    voices = ("espeak:a", "espeak:b", "espeak:c", "espeak:d")
    engine: Any = Broken()
    resources: Any = Resources()
    renderer: Any = Silence()
    heard = closed.hear_items(items, engine, resources, FLOW, renderer, voices, 1, 30.0)
    assert [h.recording.voice for h in heard] == [
        "espeak:a:160",
        "espeak:c:160",
        "espeak:b:160",
        "espeak:d:160",
    ]
    scored = closed.score(items, heard, FLOW, NoModel())  # type: ignore[arg-type]
    assert scored["failed"] == 2 and scored["questions"]["last4"]["repair"]["failed"] == 2
    assert scored["questions"]["last4"]["repair"]["mistakes"][0]["heard"].startswith("failed: ValueError")
    assert scored["questions"]["confirm_last4"]["answer"]["right"] == 1.0


def test_the_page_shows_a_run_beside_an_earlier_one() -> None:
    cell = {"recordings": 12, "right": 0.25, "text": 1.0, "mistakes": []}
    answer = cell | {"right": 0.9, "alone": {"recordings": 6, "right": 1.0}}
    half = {"recordings": 24, "answers": 0.9, "others": 0.25,
            "questions": {"last4": {"answer": answer, "digression": cell}}}  # fmt: skip
    data = {
        "date": "2026-12-06", "machine": "2 cores", "commit": "abc", "compiler": "3", "seconds": 60.0,
        "config": {"voices": ["piper"], "snr_db": 30.0}, "halves": {"test": half},
    }  # fmt: skip
    before = json.loads(json.dumps(data)) | {"commit": "old"}
    before["halves"]["test"]["questions"]["last4"]["digression"]["right"] = 0.0
    before["halves"]["test"]["others"] = 0.0
    page = closed_questions.markdown(data, "scripts/bench-closed-questions", before)
    assert "| test | last4 | digression | 12 | 25.0% | 0.0% | 100.0% |" in page
    assert "| test | | all but answers | | 25.0% | 0.0% | |" in page
    assert "Before: commit old" in page
    assert "| test | last4 | answer: digits alone | 6 | 100.0% | 100.0% | |" in page
    assert "| test | last4 | digression | 12 | 25.0% |  | 100.0% |" in closed_questions.markdown(data, "x")
    # a run with the digits read out one by one beside one without them: its answers are marked
    answer["paused"] = {"recordings": 2, "right": 0.5}
    page = closed_questions.markdown(data, "scripts/bench-closed-questions", before)
    assert "| test | last4 | answer: read out digit by digit | 2 | 50.0% |  | |" in page
    assert "| test | last4 | answer: digits alone | 6 | 100.0% | 100.0% † | |" in page
    assert "| test | | all answers | | 90.0% | 90.0% † | |" in page and "marked †" in page
    assert "| test | last4 | digression | 12 | 25.0% | 0.0% | 100.0% |" in page


def test_digits_read_out_one_by_one_are_scored_apart() -> None:
    """``{digits,}``: the digits with a pause after each, digits alone all the same; their share
    is shown apart, and they come after every other item so that those keep their draws."""
    items = closed.closed_items((("{digits,}", "answer", "digits"),), LAST4, 4, random.Random(3))
    digits = items[0].expected.split(":")[1]
    assert items[0].text.count(", ") == 3 and closed.digits_alone(items[0].text)
    assert "".join(digit_runs(items[0].text)) == digits
    scored = closed.score(items, [_heard(items[0].text.replace(",", ""), 0)], FLOW, NoModel())  # type: ignore[arg-type]
    assert scored["questions"]["last4"]["answer"]["paused"] == {"recordings": 1, "right": 1.0}
    every = closed_questions.items()
    paused = [i for i in every if "," in i.text]
    assert paused and every[-len(paused) :] == paused
