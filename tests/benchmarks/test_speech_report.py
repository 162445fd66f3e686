"""The speech benchmark's report (benchmarks/speech/report.py, plot.py) and machine figures
(machine.py): the committed results recombine and re-render to the committed page, and the
tables, command line and notes on small inputs."""

from __future__ import annotations

import argparse
import copy
import json
import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import REPO
from benchmarks.speech import spread
from benchmarks.speech.machine import cpu_counters, machine_notes, other_cores, rss_mb_of
from benchmarks.speech.report import (
    SECTIONS,
    combine,
    command_of,
    contention,
    fmt,
    level_table,
    markdown,
    tables,
    write_outputs,
)

COMMITTED = REPO / "benchmarks" / "speech.json"


@pytest.fixture
def committed() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text())  # type: ignore[no-any-return]


def test_the_committed_summary_recombines_from_its_runs(committed: dict[str, Any]) -> None:
    """Medians across the committed runs (and the calls pooled) give the committed summary:
    the aggregation the tables are built from has not changed."""
    calls_per_run = committed["summary"]["call"]["calls_per_run"]
    assert combine(committed["runs"], calls_per_run) == committed["summary"]


def test_the_committed_page_renders_from_the_committed_json(committed: dict[str, Any]) -> None:
    """speech.md is exactly what the report makes of speech.json (--replot reproduces it)."""
    assert markdown(committed) == (REPO / "benchmarks" / "speech.md").read_text()


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_outputs_are_the_json_the_page_and_the_latency_plot(
    committed: dict[str, Any], tmp_path: Path
) -> None:
    """write_outputs: speech.json holding the data as given, speech.md linking the plot,
    speech.png at 10 x 3.8 inches and 110 dpi."""
    pytest.importorskip("matplotlib")
    write_outputs(tmp_path, committed)
    assert json.loads((tmp_path / "speech.json").read_text()) == committed
    assert "![reply latency distribution](speech.png)" in (tmp_path / "speech.md").read_text()
    assert png_size(tmp_path / "speech.png") == (1100, 418)


def test_without_calls_there_is_no_plot(committed: dict[str, Any], tmp_path: Path) -> None:
    """Runs without the call section: no speech.png, and the page does not link one."""
    data = copy.deepcopy(committed)
    for run in data["runs"]:
        del run["call"]
    del data["summary"]["call"]
    write_outputs(tmp_path, data)
    assert not (tmp_path / "speech.png").exists()
    page = (tmp_path / "speech.md").read_text()
    assert "speech.png" not in page and "### Reply latency" not in page
    assert "### ASR real-time factor" in page


META = {"asr_workers": 2, "cpus": 2, "vad_end_silence_ms": 300, "call_concurrency": 5}


def test_tables_show_only_the_sections_measured() -> None:
    """A TTS-only summary: the TTS table alone, an engine that could not load on a row of its
    own with the reason, figures formatted with their units."""
    summary = {
        "tts": {
            "piper": {"version": "v", "reps_per_run": 5, "load_s": 1.569, "ttfa_short_ms": 61.0,
                      "ttfa_paragraph_ms": 70.5, "rtf_engine": 0.0704, "rtf_pipeline": 0.0664},
            "coqui": {"unavailable": "no model"},
        }
    }  # fmt: skip
    lines = tables(summary, META)
    assert lines[0] == "### TTS at 8 kHz, no cache"
    assert "| piper | 1.57 s | 61 ms | 70 ms | 0.070 | 0.066 |" in lines
    assert "| coqui | unavailable: no model | | | | |" in lines
    assert not any(line.startswith("### ASR") or line.startswith("### Concurrent") for line in lines)


def test_the_cpu_ceiling_uses_the_first_asr_case_of_each_engine() -> None:
    """CPU ceiling = workers / the CPU RTF of the engine's first ASR case (no grammar); Vosk runs
    on threads with no target; an engine with no ASR case has no ceiling."""
    case = {"audio": "a", "clips": 1, "audio_s": 1.0, "score": "WER", "rtf_wall": 0.3, "finish_ms_p50": 1.0,
            "error_rate": 0.0}  # fmt: skip
    summary = {
        "asr": {
            "cases": [
                {**case, "case": "pocketsphinx", "rtf_cpu": 0.2},
                {**case, "case": "pocketsphinx", "rtf_cpu": 0.5},
                {**case, "case": "vosk-ko", "rtf_cpu": 0.4},
            ],
            "two_thread_speedup": {"pocketsphinx": 0.9, "vosk-ko": 1.86},
        },
        "concurrency": {
            "pocketsphinx": {"max_realtime_streams": 9, "per_run": [9, 8, 10]},
            "pocketsphinx-fast": {"max_realtime_streams": 26, "per_run": [26]},
            "vosk-ko": {"max_realtime_streams": 4, "per_run": [4]},
        },
    }
    lines = tables(summary, META)
    assert "| pocketsphinx | processes | 9 | 9, 8, 10 | 10.0 | ≥ 20 |" in lines
    assert "| pocketsphinx-fast | processes | 26 | 26 | – | ≥ 20 |" in lines
    assert "| vosk-ko | threads | 4 | 4 | 5.0 | – |" in lines
    assert any("pocketsphinx 0.90x, vosk-ko 1.86x" in line for line in lines)


def test_fmt_marks_missing_figures() -> None:
    """None is a dash; numbers get their digits and unit; text passes through."""
    assert fmt(None, " ms") == "–"
    assert fmt(12.345, " ms", 1) == "12.3 ms"
    assert fmt(7) == "7"
    assert fmt("n/a", " ms") == "n/a"


def options(**changes: Any) -> argparse.Namespace:
    """The script's defaults, with ``changes``."""
    defaults = {
        "runs": 3, "seed": 7, "only": ",".join(SECTIONS), "calls": 20, "call_concurrency": 5,
        "levels": "1,2,4,8,16,32,64", "stream_seconds": 10.0,
        "concurrency_engines": "pocketsphinx,pocketsphinx-fast,pocketsphinx-auto,vosk-ko",
        "accurate_streams": 1, "coqui_model": None,
    }  # fmt: skip
    return argparse.Namespace(**{**defaults, **changes})


def test_the_command_reproduces_the_run(committed: dict[str, Any]) -> None:
    """The default run's command is the committed one; options that change what a section
    measures appear only with that section and when not the default."""
    assert command_of(options()) == committed["meta"]["command"]
    assert (
        command_of(options(runs=1, only="asr", levels="1,2"))
        == "scripts/bench-speech --runs 1 --seed 7 --only asr"
    )
    assert command_of(
        options(only="concurrency", concurrency_engines="vosk-ko", accurate_streams=3, stream_seconds=2.5)
    ) == (
        "scripts/bench-speech --runs 3 --seed 7 --only concurrency --levels 1,2,4,8,16,32,64 "
        "--stream-seconds 2.5 --concurrency-engines vosk-ko --accurate-streams 3"
    )
    assert command_of(options(only="tts", coqui_model="/m")).endswith("--only tts --coqui-model /m")


def test_contention_is_the_median_per_section_over_runs() -> None:
    """Other processes' CPU per section: the median over the runs that measured it, in the
    SECTIONS order; nothing when no section was timed."""
    runs = [
        {"other_cores": {"call": 1.0, "asr": 0.2}},
        {"other_cores": {"asr": 0.4, "call": 0.5}},
        {"other_cores": {"asr": 0.9}},
    ]
    (line,) = contention(runs, 4)
    assert "(median over runs, in cores of 4): asr 0.40, call 0.75." in line
    assert contention([{"run": 1}], 2) == []


def test_the_level_table_lists_every_level_tried(committed: dict[str, Any]) -> None:
    """One row per level tried in every run, with its pass/fail and streams ok; none without
    the concurrency section."""
    lines = level_table(committed["runs"])
    tried = sum(len(c["levels"]) for r in committed["runs"] for c in r["concurrency"].values())
    rows = [line for line in lines if line.startswith("| ") and ("pass (" in line or "fail (" in line)]
    assert len(rows) == tried
    first = committed["runs"][0]["concurrency"]["pocketsphinx"]["levels"][0]
    assert rows[0].startswith(f"| 1 | pocketsphinx | {first['streams']} | ")
    assert level_table([{"run": 1}]) == []


def test_own_cpu_is_not_counted_as_other_processes() -> None:
    """Busy-looping this process moves the machine's counter and this process's by about as
    much; what is left for other processes stays within the machine's cores."""
    before = cpu_counters()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    after = cpu_counters()
    assert after[2] - before[2] >= 0.25
    assert after[1] - before[1] >= 0.2
    assert 0 <= other_cores(before) <= (os.cpu_count() or 1)


def test_memory_and_notes_describe_this_machine() -> None:
    """This process's RSS is tens of MB at least; the notes name the worker count and the
    installed packages' versions, and the call section's tools only with it."""
    assert rss_mb_of(os.getpid()) > 10
    notes = machine_notes(3, with_call=False)
    assert any("`asr_workers=3`" in n and "PocketSphinx 5." in n for n in notes)
    assert not any(n.startswith("Asterisk:") for n in notes)
    assert any(n.startswith("Asterisk:") and "SIPp" in n for n in machine_notes(3, with_call=True))


def test_spread_names_each_statistic_in_the_key() -> None:
    """p50 and p95 to 0.1 and the max under the key's pattern; the max left out on request, and
    None for no values."""
    assert spread([50, 10, 40, 20, 30], "final_ms_{}") == {
        "final_ms_p50": 30.0,
        "final_ms_p95": 48.0,
        "final_ms_max": 50,
    }
    assert spread([], "caller_{}_ms", with_max=False) == {"caller_p50_ms": None, "caller_p95_ms": None}
