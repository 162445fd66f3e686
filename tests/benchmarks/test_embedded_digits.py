"""scripts/bench-embedded-digits's code apart from speech: the sentences and their halves, the
digit strings said in them, the score from what was heard (the engine's own slot filling and
decision rules), and the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import embedded_digits
from benchmarks.banking_speech import BANKING
from ivr_server.dialog.slots.words import digit_runs
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.evaluation import embedded
from ivr_server.evaluation.spoken import Recognized, Recording
from ivr_server.speech.asr.base import AsrResult


class NoModel:
    """An intent model that guesses nothing: the flow's keywords and patterns decide."""

    def guesses(self, text: str) -> list[Any]:
        return []


def test_each_sentence_says_its_slots_digits_and_the_halves_share_none() -> None:
    """Every template gives one digit string of its slot's length, said as words ("oh" or
    "zero"), the same on every run; the development and test halves have no sentence in common
    (choices are made on the cards' last four digits, tested on account numbers)."""
    requests = embedded.digit_requests(
        embedded_digits.TEMPLATES, embedded_digits.LENGTHS, embedded_digits.SEED
    )
    assert requests == embedded.digit_requests(
        embedded_digits.TEMPLATES, embedded_digits.LENGTHS, embedded_digits.SEED
    )
    assert len(requests) >= 40
    for r in requests:
        assert r.digits in digit_runs(r.text) and len(r.digits) == embedded_digits.LENGTHS[r.slot], r
        assert not any(ch.isdigit() for ch in r.text)
    halves = embedded_digits.halves(requests)
    assert not {r.text for r in halves["dev"]} & {r.text for r in halves["test"]}
    intents = set(load_flow(BANKING).intents)
    assert {r.slot for r in halves["dev"]} == {"last4"} and {r.slot for r in halves["test"]} == {"account"}
    assert len(halves["dev"]) == len(halves["test"]) >= 20
    assert {r.intent for r in requests} <= intents


def _heard(text: str, index: int) -> Recognized:
    rec = Recording("", str(index), np.zeros(8, np.int16), 8000, "piper:joe-us:1")
    return Recognized(rec, AsrResult(text, True, "test", "test", confidence=0.9), 0.0)


def test_the_digits_count_only_when_the_engine_fills_the_slot_with_them() -> None:
    """Heard word for word: the digits are right and the request is acted on by the flow's
    rules; "ending and for five speak five": no digits; a sentence whose digits are right but
    whose request is not understood counts for the digits only."""
    flow = load_flow(BANKING)
    said = embedded.DigitRequest(
        "my card ending in four five eight five was stolen", "lost_card", "last4", "4585"
    )
    heard = [
        _heard("my card ending in four five eight five was stolen", 0),
        _heard("my card ending and for five speak five was stolen", 0),
        _heard("my guard ending in four five eight five", 0),
    ]
    scored = embedded.score_requests([said], heard, flow, "welcome", NoModel())  # type: ignore[arg-type]
    assert scored["recordings"] == 3
    assert scored["digits"] == round(2 / 3, 4) and scored["intent"] == round(2 / 3, 4)
    assert scored["both"] == round(1 / 3, 4) and len(scored["mistakes"]) == 2


def test_the_page_shows_a_run_beside_an_earlier_one(tmp_path: Path) -> None:
    half = {"recordings": 48, "digits": 0.354, "intent": 0.583, "both": 0.229, "wer": 0.342, "mistakes": []}
    data = {
        "date": "2026-12-06", "machine": "2 cores", "commit": "abc", "compiler": "3", "seconds": 1.0,
        "config": {"voices": ["piper"], "snr_db": 30.0, "fold": 3, "ordinary_voices": ["piper"]},
        "digits": {"test": half},
        "ordinary": {"banking77_flow": {"utterances": 100, "wer": 0.165, "spoken_accuracy": 0.83},
                     "banking_flow": {"wer": 0.563, "agree": 0.69}},
    }  # fmt: skip
    before = json.loads(json.dumps(data)) | {"compiler": "2"}
    before["digits"]["test"]["digits"] = 0.062
    page = embedded_digits.markdown(data, "scripts/bench-embedded-digits", before)
    assert "| test | 48 | 35.4% |" in page and "| test (before) | 48 | 6.2% |" in page
    assert "compiler 2" in page and "| banking flow (before) | 56.3% |" in page
