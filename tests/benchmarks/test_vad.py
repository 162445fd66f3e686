"""The VAD benchmark's code (benchmarks/vad): noise generation, test streams and reference labels
on real FSDD recordings, the endpointing and scoring on known probability sequences, the real
detectors on one small run, the median over runs, and the tables it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.vad import report
from benchmarks.vad.measure import (
    CONDITIONS,
    Clock,
    Plan,
    Variant,
    endpoint,
    endpoint_scores,
    frame_scores,
    merge,
    one_run,
    probabilities,
    settings_for,
)
from benchmarks.vad.streams import Stream, build, hum, load, pink, pool, reference, scaled
from ivr_server.media.g711 import ulaw_decode
from ivr_server.speech.vad.detectors import load_detector
from tests.support.data import FSDD

needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD recordings not at {FSDD}")
QUIET = FSDD / "1_yweweler_4.wav"  # a low-noise recording: its labels are set by the peak rule


def slope_db_per_decade(x: np.ndarray, rate: int, lo: float = 100, hi: float = 3000) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    band = (f > lo) & (f < hi)
    return float(np.polyfit(np.log10(f[band]), 10 * np.log10(power[band]), 1)[0])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt((x.astype(np.float64) ** 2).mean()))


def test_pink_noise_loses_3_db_per_octave_where_white_noise_is_flat() -> None:
    """Pink noise's power falls 10 dB per decade (1/f) across the telephone band; white noise,
    drawn from the same generator, stays flat."""
    rng = np.random.default_rng(1)
    assert slope_db_per_decade(pink(rng, 8000 * 20, 8000), 8000) == pytest.approx(-10, abs=0.7)
    assert slope_db_per_decade(rng.normal(size=8000 * 20), 8000) == pytest.approx(0, abs=0.7)


def test_hum_is_a_mains_fundamental_with_its_2nd_and_3rd_harmonics() -> None:
    """All of the hum's power sits at 50 or 60 Hz and its 2nd and 3rd harmonics, at -6 and -12 dB."""
    rng = np.random.default_rng(2)
    x = hum(rng, 8000, 8000)  # 1 s: 1 Hz bins, no leakage from whole-cycle tones
    amp = np.abs(np.fft.rfft(x))
    f0 = int(np.argmax(amp))
    assert f0 in (50, 60)
    assert amp[2 * f0] / amp[f0] == pytest.approx(0.5, rel=1e-6)
    assert amp[3 * f0] / amp[f0] == pytest.approx(0.25, rel=1e-6)
    assert (amp[[f0, 2 * f0, 3 * f0]] ** 2).sum() / (amp**2).sum() > 0.9999


def test_scaled_noise_has_the_asked_rms() -> None:
    """scaled() sets a noise's rms level whatever it was before."""
    noise = np.random.default_rng(3).normal(0, 123.0, 10000)
    assert rms(scaled(noise, 500.0)) == pytest.approx(500.0, rel=1e-9)


@needs_fsdd
def test_reference_labels_hold_the_speech_of_real_recordings() -> None:
    """On recordings of each FSDD speaker, the labelled region is a digit's length, holds nearly all
    of the recording's energy, and its level stands over the background by more than the
    threshold's 6 dB margin."""
    for name in ("7_nicolas_2", "4_jackson_7", "1_yweweler_4", "0_nicolas_10", "8_jackson_3", "5_yweweler_1"):
        pcm = load(FSDD / f"{name}.wav")
        onset, offset, speech_rms, floor_rms = reference(pcm)
        energy = pcm.astype(np.float64) ** 2
        assert 0 <= onset < offset <= len(pcm) // 8, name
        assert 150 <= offset - onset <= 1000, name
        assert energy[onset * 8 : offset * 8].sum() / energy.sum() > 0.95, name
        assert 20 * np.log10(speech_rms / floor_rms) > 6, name


@needs_fsdd
def test_reference_region_is_bounded_by_the_documented_threshold() -> None:
    """The region runs from the first to the last 10 ms frame at or above max(peak - 30 dB,
    quietest frame + 6 dB); noisy speakers (nicolas) get the background rule, quiet ones
    (yweweler) the peak rule."""
    rules = set()
    for name in ("7_nicolas_2", "0_nicolas_10", "1_yweweler_4", "5_yweweler_1", "4_jackson_7"):
        pcm = load(FSDD / f"{name}.wav")
        onset, offset, _, _ = reference(pcm)
        frames = pcm[: len(pcm) // 80 * 80].astype(np.float64).reshape(-1, 80)
        db = 10 * np.log10(np.maximum((frames**2).mean(axis=1), 1e-3))
        peak_rule, floor_rule = db.max() - 30, db.min() + 6
        rules.add("peak" if peak_rule > floor_rule else "floor")
        thr = max(peak_rule, floor_rule)
        first, last = onset // 10, offset // 10 - 1
        assert db[first] >= thr and db[last] >= thr, name
        assert (db[:first] < thr).all() and (db[last + 1 :] < thr).all(), name
    assert rules == {"peak", "floor"}


@needs_fsdd
def test_reference_labels_move_with_the_recording_not_with_its_padding() -> None:
    """Digital silence before and after a quiet recording shifts its labelled region by exactly
    the padding and leaves the speech level as it was."""
    pcm = load(QUIET)
    onset, offset, speech_rms, _ = reference(pcm)
    padded = np.concatenate([np.zeros(2400, np.int16), pcm, np.zeros(1600, np.int16)])
    assert reference(padded)[:3] == (onset + 300, offset + 300, speech_rms)


@needs_fsdd
@pytest.mark.parametrize(("cond", "snr"), [("white", 20), ("pink", 10), ("hum", 0), ("babble", 5)])
def test_noise_is_added_at_the_asked_snr_under_the_speech(cond: str, snr: int) -> None:
    """A noisy stream is the clean stream of the same seed plus noise whose rms sits ``snr`` dB
    under the recording's active speech level (16 kHz: no µ-law in the way)."""
    recordings = pool()
    clean = build(np.random.default_rng(5), QUIET, recordings, "clean", None, 16000)
    noisy = build(np.random.default_rng(5), QUIET, recordings, cond, snr, 16000)
    assert (noisy.onset_ms, noisy.offset_ms) == (clean.onset_ms, clean.offset_ms)
    noise = noisy.pcm.astype(np.float64) - clean.pcm
    speech_rms = reference(load(QUIET))[2]
    assert 20 * np.log10(speech_rms / rms(noise)) == pytest.approx(snr, abs=0.05)


@needs_fsdd
def test_a_stream_is_the_recording_in_padding_labelled_per_frame() -> None:
    """The recording starts 1-2 s in and is followed by 2 s; the labels are the 20 ms frames whose
    centres fall between its reference onset and offset; at 8 kHz every sample is a µ-law value."""
    onset, offset, _, _ = reference(load(QUIET))
    s = build(np.random.default_rng(6), QUIET, pool(), "clean", None, 8000)
    lead = s.onset_ms - onset
    assert 1000 <= lead < 2000 and lead % 10 == 0 and s.offset_ms == lead + offset
    assert len(s.pcm) // 8 >= lead + len(load(QUIET)) // 8 + 2000 - 20
    centres = np.arange(len(s.ref)) * 20 + 10
    assert np.array_equal(s.ref, (centres >= s.onset_ms) & (centres < s.offset_ms))
    assert s.ref.sum() == pytest.approx((offset - onset) / 20, abs=1)
    assert set(np.unique(s.pcm)) <= set(ulaw_decode(bytes(range(256))))


@needs_fsdd
def test_a_clipped_stream_is_overdriven_into_full_scale() -> None:
    """The clipped condition drives the speech peaks 12 dB over full scale: many samples sit at it."""
    s = build(np.random.default_rng(7), QUIET, pool(), "clipped", None, 16000)
    at_rail = np.count_nonzero((s.pcm == 32767) | (s.pcm == -32768))
    assert at_rail > 0.01 * s.ref.sum() * 320


def test_endpoint_restarts_after_each_end_and_keeps_stream_positions() -> None:
    """Each utterance is reported in stream milliseconds although the endpointer restarts after
    every end; one still open when the stream stops has no end."""
    st = settings_for(Variant("energy", 0.5, 0.5), 40, 100)
    probs = np.array([0] * 5 + [1] * 4 + [0] * 10 + [1] * 3 + [0] * 2, float)
    (a1, b1), (a2, b2) = endpoint(probs, st)
    assert (a1.start_ms, a1.detected_ms) == (100, 140)
    assert b1 is not None and (b1.end_ms, b1.detected_ms, b1.reason) == (180, 280, "silence")
    assert (a2.start_ms, a2.detected_ms, b2) == (380, 420, None)


def stream(onset: int, offset: int, probs: list[float]) -> tuple[Stream, np.ndarray]:
    centres = np.arange(len(probs)) * 20 + 10
    ref = (centres >= onset) & (centres < offset)
    return Stream(np.zeros(len(probs) * 160, np.int16), onset, offset, ref), np.array(probs, float)


def test_frame_scores_count_frames_against_the_labels() -> None:
    """Accuracy, recall and false alarms are shares of all, speech and non-speech frames."""
    s1, p1 = stream(40, 100, [0, 0, 1, 1, 0.4, 0.6])  # speech frames 2-4: two called speech, one FA
    s2, p2 = stream(0, 40, [0.5, 0, 0, 0])  # speech frames 0-1: one called speech
    scores = frame_scores([s1, s2], [p1, p2], 0.5)
    assert scores == {"accuracy": 7 / 10, "recall": 3 / 5, "false_alarm": 1 / 5}


def test_endpoint_scores_on_known_streams() -> None:
    """Latencies against the true onset and offset, a miss, a start that ended before the speech,
    a split utterance, and false starts per minute on 20 s noise-only streams."""
    late = stream(60, 160, [0] * 5 + [1] * 4 + [0] * 10)  # starts 140 (80 late), ends 280 (120)
    missed = stream(200, 300, [0] * 20)
    early = stream(400, 500, [1] * 4 + [0] * 16 + [1] * 5 + [0] * 10)  # burst 0-80 first
    split = stream(0, 400, [1] * 5 + [0] * 5 + [1] * 10 + [0] * 10)
    noises = {"line": np.zeros(1000), "white": np.array([1.0] * 3 + [0.0] * 10 + [1.0] * 3 + [0.0] * 10)}
    st = settings_for(Variant("energy", 0.5, 0.5), 40, 100)
    e = endpoint_scores([late, missed, early, split], noises, st)
    assert e == {
        "onset_latency_ms_median": 40.0,
        "onset_latency_ms_p90": pytest.approx(72.0),
        "miss_rate": 0.25,
        "false_start_before_speech_rate": 0.25,
        "split_rate": 0.25,
        "end_latency_ms_median": 100.0,
        "noise_false_starts_per_min": {"line": 0.0, "white": 6.0},
    }


def test_merge_takes_the_median_of_each_leaf_over_runs() -> None:
    """Runs merge leaf by leaf into medians; a leaf no run measured stays None."""
    runs = [
        {"a": 1.0, "b": {"c": None, "d": None}},
        {"a": 10.0, "b": {"c": 2.0, "d": None}},
        {"a": 2.0, "b": {"c": 4.0, "d": None}},
    ]
    assert merge(runs) == {"a": 2.0, "b": {"c": 3.0, "d": None}}


@needs_fsdd
def test_one_run_with_the_energy_detector_on_real_recordings() -> None:
    """A small run gives frame scores for every condition, sane endpointing, no false starts on
    line noise, a CPU cost, and the same figures again for the same seed."""
    plan = Plan(runs=1, files=2, rates=(8000,), min_speech=(20, 60), variants=(Variant("energy", 0.5, 0.5),))
    recordings = pool()
    result = one_run(0, plan, recordings)
    r = result["8000"]
    assert list(r) == ["us_per_frame", "energy p>=0.5"]
    assert r["us_per_frame"]["energy"] > 0
    row = r["energy p>=0.5"]
    assert len(row["conditions"]) == len(CONDITIONS)
    assert all(0 <= v <= 1 for c in row["conditions"].values() for v in c.values())
    assert row["conditions"]["clean"]["accuracy"] > 0.9
    for ms in (20, 60):
        e = row[f"min_speech_{ms}"]
        assert e["miss_rate"] < 0.5 and e["onset_latency_ms_median"] is not None
        assert e["noise_false_starts_per_min"]["line"] == 0.0
    assert row["min_speech_60"]["onset_latency_ms_median"] > row["min_speech_20"]["onset_latency_ms_median"]
    again = one_run(0, plan, recordings)["8000"]["energy p>=0.5"]
    assert again == row


@needs_fsdd
def test_silero_probabilities_follow_the_reference_labels() -> None:
    """The Silero model, fed a clean stream frame by frame, is confident inside the labelled speech
    and not outside it; the clock counts every frame."""
    s = build(np.random.default_rng(3), QUIET, pool(), "clean", None, 8000)
    clock = Clock()
    p = probabilities(load_detector("silero", 8000), s.pcm, 8000, clock)
    assert len(p) == len(s.ref) == clock.frames and clock.us_per_frame > 0
    assert p[s.ref].mean() > 0.7 and p[~s.ref].mean() < 0.15


def small_result() -> tuple[dict[str, Any], Plan]:
    def acc(a: float) -> dict[str, float]:
        return {"accuracy": a, "recall": 0.5, "false_alarm": 0.0}

    conditions = {
        "clean": {"accuracy": 0.9, "recall": 0.8, "false_alarm": 0.05},
        "white 20": acc(0.8),
        "white 5": acc(0.6),
        "pink 10": acc(0.75),
        "babble 10": acc(0.5),
        "hum 0": acc(0.95),
        "clipped": acc(0.85),
    }
    e20 = {
        "onset_latency_ms_median": 40.0,
        "onset_latency_ms_p90": 72.4,
        "miss_rate": 0.25,
        "false_start_before_speech_rate": 0.0,
        "split_rate": 0.0,
        "end_latency_ms_median": None,
        "noise_false_starts_per_min": {"line": 0.0, "white": 6.0, "pink": 3.0, "hum": 0.0, "babble": 21.0},
    }
    e60 = {**e20, "onset_latency_ms_median": None, "onset_latency_ms_p90": None, "miss_rate": 1.0}
    res = {
        "8000": {
            "us_per_frame": {"energy": 23.4},
            "energy p>=0.5/0.3": {"conditions": conditions, "min_speech_20": e20, "min_speech_60": e60},
        }
    }
    plan = Plan(runs=1, files=2, rates=(8000,), min_speech=(20, 60), variants=(Variant("energy", 0.5, 0.3),))
    return res, plan


def test_tables_render_a_small_result() -> None:
    """The summary row averages accuracy per noise group and prints the endpointing figures at the
    default min_speech_ms ("-" where none); the sweep has a row per min_speech_ms; the last table
    lists each condition."""
    res, plan = small_result()
    md = report.tables(res, plan)
    lines = md.splitlines()
    assert lines[0] == "### 8000 Hz (µ-law): min_speech_ms=20, end_silence_ms=700"
    assert (
        "| energy p>=0.5/0.3 | 0.900 | 0.700 | 0.750 | 0.500 | 0.950 | 0.850 | 0.800 | 0.050 | 40/72 | 25.0% "
        "| - | 0.0% | 0.0, 6.0, 3.0, 0.0 / 21.0 | 23 |"
    ) in lines
    assert "| energy p>=0.5/0.3 | 20 | 40/72 | 25.0% | 0.0, 6.0, 3.0, 0.0 / 21.0 |" in lines
    assert "| energy p>=0.5/0.3 | 60 | -/- | 100.0% | 0.0, 6.0, 3.0, 0.0 / 21.0 |" in lines
    assert lines[-3] == "| variant | clean | white 20 | white 5 | pink 10 | babble 10 | hum 0 | clipped |"
    assert lines[-1] == "| energy p>=0.5/0.3 | 0.900 | 0.800 | 0.600 | 0.750 | 0.500 | 0.950 | 0.850 |"
    assert all(line.count("|") == lines[2].count("|") for line in lines[2:5])  # header, rule, row


def test_write_saves_the_results_with_the_command_that_makes_them(tmp_path: Path) -> None:
    """vad.json holds the command, settings and results; vad.md the command, the tables and the
    reasoning for the chosen detector."""
    res, plan = small_result()
    table = report.tables(res, plan)
    report.write(tmp_path / "out", res, plan, table, 12.34)
    saved = json.loads((tmp_path / "out" / "vad.json").read_text())
    cmd = (
        "scripts/bench-vad --runs 1 --files 2 --seed 7 --rates 8000 --min-speech 20,60 "
        "--default-min-speech 20 --end-silence 700"
    )
    assert saved["meta"]["command"] == cmd and saved["meta"]["seconds"] == 12.3
    assert saved["results"] == res
    md = (tmp_path / "out" / "vad.md").read_text()
    assert md.startswith("# Voice activity detection benchmark\n\nRegenerate: `" + cmd + "` (12 s on ")
    assert table in md and md.endswith(report.CHOICE)
