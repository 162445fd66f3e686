"""The fuzzer of hostile input: every parser survives a short run, and the harness itself
reports a crash and a hang when a parser has one (so a clean run means something)."""

from __future__ import annotations

import time

from ivr_server.evaluation import fuzz


def test_every_parser_survives_a_short_run() -> None:
    reports = fuzz.fuzz_all(3000, seed=11, log=lambda _line: None)
    assert set(reports) == {t.name for t in fuzz.TARGETS}
    for name, report in reports.items():
        assert report.inputs > 0 and not report.crashes and not report.hangs, (name, report.as_dict())
    assert reports["ari_event"].refused > 0 and reports["tool_answer"].refused < reports["tool_answer"].inputs


def test_the_harness_reports_crashes_and_hangs() -> None:
    def parser(text: str) -> None:
        if text.startswith("c"):
            raise KeyError(text)
        if text.startswith("h"):
            time.sleep(fuzz.HANG_S + 1)
        if text.startswith("r"):
            raise ValueError("refused")

    inputs = iter(["ok", "crash", "refuse", "hang"])
    target = fuzz.Target("toy", lambda _rng: next(inputs), parser, (ValueError,), 1.0)
    report = fuzz.fuzz(target, 4, seed=1)
    assert report.inputs == 4 and report.refused == 1 and len(report.hangs) == 1
    assert report.crashes == [{"input": "'crash'", "error": "KeyError: 'crash'"}]


def test_redaction_timing_reports_every_stress_text() -> None:
    figures = fuzz.redaction_timing(chars=2000, repeats=1)
    assert set(figures) == set(fuzz.REDACTION_STRESS) and all(ms >= 0 for ms in figures.values())
    assert all(len(make(2000)) <= 2000 for make in fuzz.REDACTION_STRESS.values())
