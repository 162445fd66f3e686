"""scripts/bench-korean's measuring code (benchmarks/korean.py) with the real parts: espeak-ng's
Korean voice, the telephone channel, Vosk's Korean model and the Korean flow's intent model."""

from __future__ import annotations

from pathlib import Path

from benchmarks.korean import REQUESTS, digit_cases, markdown, run, summarize, write
from ivr_server.dialog.slots.parsers import parse
from ivr_server.dialog.spec.loader import load_flow
from ivr_server.dialog.spec.model import Slot
from tests.conftest import REPO


def test_the_requests_are_held_out_from_the_flows_examples_and_cover_its_open_question() -> None:
    flow = load_flow(REPO / "flows" / "banking-ko.yaml")
    examples = {e for i in flow.intents.values() for e in i.examples}
    assert not examples & {t for texts in REQUESTS.values() for t in texts}
    assert set(REQUESTS) == set(flow.states["welcome"].listen)


def test_digit_cases_say_each_digit_as_its_sino_korean_word() -> None:
    cases = digit_cases(50, seed=3)
    assert cases == digit_cases(50, seed=3) and len({d for d, _ in cases}) > 40
    for digits, said in cases:
        assert len(said.split()) == 4 and len(digits) == 4
        assert parse(Slot("d", "digits", length=4), said).value == digits  # the parser reads them back
        assert ("0" in digits) == ("공" in said.split())  # zero is said 공, as on the phone


def test_summary_shares_per_task_and_voice() -> None:
    rows = [
        {"task": "open", "voice": "a", "right": True, "typed_right": True, "char_errors": 1, "chars": 10},
        {"task": "open", "voice": "b", "right": False, "typed_right": True, "char_errors": 9, "chars": 10},
        {"task": "yesno", "voice": "a", "right": True},
    ]
    s = summarize(rows)
    assert s["open"] == {
        "n": 2,
        "right": 0.5,
        "by_voice": {"a": 1.0, "b": 0.0},
        "typed_right": 1.0,
        "cer": 0.5,
    }
    assert s["yesno"]["right"] == 1.0 and "digits" not in s


def test_a_real_run_recognizes_korean_over_the_line_and_reports_it(tmp_path: Path) -> None:
    report = run(["espeak:ko:160"], digits=2)
    s = report["summary"]
    assert s["open"]["n"] == sum(len(t) for t in REQUESTS.values()) and s["digits"]["n"] == 2
    assert s["open"]["typed_right"] >= 0.75  # the flow understands typed Korean it never saw
    assert s["yesno"]["right"] >= 0.5  # short answers against their few words do get through
    assert all(r["heard"] is not None for r in report["rows"])
    text = write(report, tmp_path)
    assert (tmp_path / "korean.json").is_file() and text == markdown(report)
    assert "| yes / no | 6 |" in text and "scripts/bench-korean" in text
