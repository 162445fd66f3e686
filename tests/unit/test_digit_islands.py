"""Cutting a digit utterance into islands of sound at its pauses (pure code)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.speech.asr.digits import FRAME_S, IslandSettings, frame_levels_db, islands

RATE = 8000
QUIET, LOUD = 20.0, 70.0  # dB (int16 scale): a line's noise floor, speech


def levels(*spans: tuple[float, float], total_s: float = 3.0) -> np.ndarray:
    """Frame levels: LOUD inside the (start s, end s) spans, QUIET elsewhere."""
    out = np.full(int(round(total_s / FRAME_S)), QUIET)
    for a, b in spans:
        out[int(round(a / FRAME_S)) : int(round(b / FRAME_S))] = LOUD
    return out


def test_digits_said_with_pauses_are_separate_islands() -> None:
    assert islands(levels((0.3, 0.8), (1.2, 1.6), (2.0, 2.5))) == [(30, 80), (120, 160), (200, 250)]


def test_a_short_gap_inside_a_word_is_bridged_and_a_click_is_dropped() -> None:
    assert islands(levels((0.3, 0.5), (0.6, 0.9), (2.0, 2.04))) == [(30, 90)]


def test_silence_and_steady_noise_have_no_islands() -> None:
    assert islands(np.full(300, QUIET)) == []
    assert islands(np.zeros(0)) == []
    noise = np.random.default_rng(1).standard_normal(RATE * 2) * 300
    assert islands(frame_levels_db(noise.astype(np.int16), RATE)) == []


def test_frame_levels_of_real_samples() -> None:
    t = np.arange(RATE) / RATE
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    pcm = np.concatenate([np.zeros(RATE // 2, np.int16), tone, np.zeros(RATE // 2, np.int16)])
    assert islands(frame_levels_db(pcm, RATE)) == [(50, 150)]


@given(
    st.lists(st.tuples(st.integers(0, 299), st.integers(1, 80)), max_size=8),
    st.floats(0.0, 30.0),
)
def test_islands_are_ordered_apart_and_long_enough(spans: list[tuple[int, int]], jitter: float) -> None:
    settings = IslandSettings()
    lv = np.full(300, QUIET) + np.linspace(0, jitter, 300)
    for start, length in spans:
        lv[start : start + length] = LOUD
    found = islands(lv, settings)
    shortest = round(settings.min_island_s / FRAME_S)
    bridge = round(settings.bridge_s / FRAME_S)
    for a, b in found:
        assert 0 <= a < b <= len(lv) and b - a >= shortest
    for (_, end), (start, _) in zip(found, found[1:], strict=False):
        assert start - end >= bridge


def test_a_clip_cut_tight_around_one_digit_is_one_island() -> None:
    """FSDD's recordings hold the digit and almost nothing else: no quiet part to call a floor."""
    lv = np.concatenate([np.linspace(52, 65, 10), np.full(15, 63.0), np.linspace(62, 50, 11)])
    assert islands(lv) == [(0, 36)]
