"""scripts/soak's code (benchmarks.soak) apart from the real calls: memory growth after warm-up,
leaks between two idle readings, the verdict, the report, the callers' SIPp options."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.ops.runs import Bench
from benchmarks.ops.server import OtlpReceiver
from benchmarks.soak.measure import Sample, calls_placed, leaks, memory_growth, verdict
from benchmarks.soak.report import build, markdown, replot
from benchmarks.soak.run import soak_callers, tree_counts


def _samples(mb: list[float], every_s: float = 10.0) -> list[Sample]:
    return [Sample(i * every_s, m, 100, 40, 60, 20) for i, m in enumerate(mb)]


def test_growth_compares_the_window_after_warm_up_with_the_last() -> None:
    """30 minutes, sampled every 10 s: warm-up (pools filling) does not count; a flat run after
    it is 0 %, a slow climb is its rise between the two medians."""
    warming = [800 + 10 * i for i in range(30)]  # the first 5 minutes: 800 -> 1090
    flat = memory_growth(_samples(warming + [1100.0] * 150))
    assert flat["after_warmup_mb"] == 1100 and flat["end_mb"] == 1100 and flat["growth_pct"] == 0
    climbing = memory_growth(_samples(warming + [1100 + i * 0.5 for i in range(150)]))
    assert climbing["growth_pct"] is not None and 4 < climbing["growth_pct"] < 7  # ~1115 -> ~1175
    assert memory_growth([])["growth_pct"] is None


def test_a_short_run_compares_the_halves_after_its_warm_up() -> None:
    short = memory_growth(_samples([90.0] * 6 + [100.0] * 3 + [110.0] * 3))  # under two minutes
    assert short["warmup_s"] == 55 and short["window_s"] == 28 and short["growth_pct"] == 10


def test_leaks_are_counted_between_idle_readings_with_room_for_pools() -> None:
    before = {"fds": 120, "threads": 40, "tasks": 12}
    found = leaks(before, {"fds": 123, "threads": 40, "tasks": 812}, calls=800)
    assert found["allowed"] == 8
    assert not found["fds"]["leak"] and found["fds"]["grew"] == 3  # keep-alive connections
    assert found["tasks"]["leak"] and found["tasks"]["grew"] == 800  # one per call: a leak
    assert leaks(before, {"fds": 121, "threads": 40, "tasks": 12}, calls=10)["fds"]["leak"]  # 1 of 10
    unread = leaks(before, {"fds": 120, "threads": 40, "tasks": None}, calls=10)["tasks"]
    assert unread["grew"] is None and not unread["leak"]


def _result(**over: object) -> dict:
    base = {
        "calls": {"placed": 100, "successful": 100, "failed": 0, "ended_by_server": 100},
        "memory": {"growth_pct": 1.0},
        "leaks": leaks({"fds": 1, "threads": 1, "tasks": 1}, {"fds": 1, "threads": 1, "tasks": 1}, 100),
    }
    return {**base, **over}


def test_the_verdict_names_each_failure() -> None:
    assert verdict(_result()) == []
    missed = {"placed": 100, "successful": 97, "failed": 3, "ended_by_server": 99}
    assert verdict(_result(calls=missed)) == [
        "3 of 100 calls not completed by SIPp",
        "the server ended 99 of 100 calls",
    ]
    assert verdict(_result(memory={"growth_pct": 7.5})) == ["memory grew 7.5 % after warm-up (more than 5 %)"]
    assert verdict(_result(memory={"growth_pct": None})) == ["memory growth not measured"]
    leaky = leaks({"fds": 1, "threads": 1, "tasks": 1}, {"fds": 101, "threads": 1, "tasks": 1}, 100)
    assert verdict(_result(leaks=leaky)) == ["fds grew by 100 over 100 calls"]


def test_calls_placed_keep_the_count_up_for_the_minutes() -> None:
    assert calls_placed(30, 25, 60.0) == 750
    assert calls_placed(0.5, 4, 60.0) == 4  # at least one round
    with pytest.raises(ValueError):
        calls_placed(30, 0, 60.0)


def _raw() -> dict:
    samples = [Sample(i * 10.0, 1000.0 + (i % 3), 150 + i % 2, 50, 80, 20).as_dict() for i in range(180)]
    return {
        "calls_at_once": 20, "minutes": 30, "placed": 600, "server_error": None,
        "calls": {"successful": 600, "failed": 0}, "ended_by_server": 600, "samples": samples,
        "idle_before": {"fds": 120, "threads": 44, "tasks": 11},
        "idle_after": {"fds": 121, "threads": 44, "tasks": 11},
        "problems": {"call.flow_failed": 0, "media.clock_skipped": 2},
    }  # fmt: skip


META = {"command": "scripts/soak", "date": "2026-12-06", "commit": "abc1234", "cores": 2,
        "machine": "Xeon", "asr": "pocketsphinx", "minutes_taken": 33, "method": ["- how"]}  # fmt: skip


def test_report_passes_a_clean_soak_and_replots_from_its_json(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    data = build(_raw(), META)
    assert data["failed_because"] == [] and data["memory"]["growth_pct"] == 0
    text = markdown(data)
    assert "**Passed**." in text and "| Calls completed (SIPp) | 600 of 600 (0 failed) | all |" in text
    assert "120 / 121 (grew 1)" in text and "`media.clock_skipped` 2" in text
    (tmp_path / "soak.json").write_text(json.dumps(data))
    assert replot(tmp_path) == text and (tmp_path / "soak.png").stat().st_size > 10_000


def test_a_server_that_failed_fails_the_soak() -> None:
    data = build({**_raw(), "server_error": "RuntimeError: the server exited (1)"}, META)
    assert data["failed_because"] == ["the server failed: RuntimeError: the server exited (1)"]
    assert "**Failed**: the server failed" in markdown(data)


def test_soak_callers_hold_the_count_with_sipps_limit(tmp_path: Path) -> None:
    b = Bench(tmp_path, "http://127.0.0.1:1", OtlpReceiver(), [], call_s=60.0)
    argv = soak_callers(b, 20, 600, tmp_path).argv()
    assert argv[argv.index("-m") + 1] == "600" and argv[argv.index("-l") + 1] == "20"
    assert argv[argv.index("-r") + 1] == "20" and argv[argv.index("-rp") + 1] == "8000"
    assert str(tmp_path / "sipp-stats.csv") in argv


def test_tree_counts_read_this_process_and_its_children() -> None:
    counts = tree_counts(os.getpid())
    assert counts["fds"] >= 3 and counts["threads"] >= 1
