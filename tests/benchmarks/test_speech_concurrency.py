"""The speech benchmark's concurrency section (benchmarks/speech/concurrency.py): the capacity
search, the real-time criterion on known timings, callers built from real audio and a real
AsrService level of one caller."""

from __future__ import annotations

import random

import numpy as np
import pytest

from benchmarks.speech.audio import FRAME, RATE, SENTENCES, Voices
from benchmarks.speech.concurrency import (
    ENGINE_OF,
    FINAL_MS,
    PARTIAL_LAG_MS,
    PAUSE_S,
    TAIL_S,
    Load,
    Turn,
    Utterance,
    channel,
    largest_passing,
    level_result,
    one_level,
)

LADDER = (1, 2, 4, 8, 16, 32, 64)


class Machine:
    """A stand-in for the measurement in the search tests only: N passes up to ``capacity``;
    it records what was tried."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tried: list[int] = []

    async def passes(self, n: int) -> bool:
        self.tried.append(n)
        return n <= self.capacity


async def test_search_from_scratch_climbs_the_ladder_then_bisects() -> None:
    """Up the ladder to the first failure (16), then bisection between 8 and 16 to the exact
    boundary at this size (a tenth of 8 rounds to steps of one)."""
    machine = Machine(13)
    assert await largest_passing(machine.passes, LADDER, None) == 13
    assert machine.tried == [1, 2, 4, 8, 16, 12, 14, 13]


async def test_search_bisects_to_a_tenth_at_large_sizes() -> None:
    """Between 32 and 64 the search stops within a tenth of the last pass (3 streams here)."""
    machine = Machine(50)
    found = await largest_passing(machine.passes, LADDER, None)
    assert found <= 50 and 50 - found <= found // 10


async def test_search_ends_at_the_ladders_top_or_at_zero() -> None:
    """Every level passing gives the top of the ladder; none passing gives 0."""
    assert await largest_passing(Machine(1000).passes, LADDER, None) == 64
    assert await largest_passing(Machine(0).passes, LADDER, None) == 0


async def test_search_from_a_previous_answer_steps_to_the_boundary() -> None:
    """Later runs start at the last answer and step (by a tenth) up or down until they see the
    boundary, without climbing the ladder again."""
    same = Machine(13)
    assert await largest_passing(same.passes, LADDER, 13) == 13
    assert same.tried == [13, 14]
    lower = Machine(13)
    assert await largest_passing(lower.passes, LADDER, 20) == 13
    assert lower.tried == [20, 18, 17, 16, 15, 14, 13]
    higher = Machine(13)
    assert await largest_passing(higher.passes, LADDER, 10) == 13
    assert higher.tried == [10, 11, 12, 13, 14]


def timed_turn() -> Turn:
    """A stream whose lone recognizer said "i" at frame 2 and "i would" at frame 5, fed one
    frame every 20 ms from t = 0."""
    audio = Utterance(np.zeros(10 * FRAME, np.int16), [(2, "i"), (5, "i would")])
    return Turn(audio, start_tick=0, fed_at=[k * 0.02 for k in range(10)])


def test_partial_lag_is_measured_from_the_frame_that_produced_it() -> None:
    """Each partial is matched, in order, with the reference frame that first gave its text;
    a text no lone recognizer gave is counted, not timed."""
    turn = timed_turn()
    turn.partials = [(0.07, "i"), (0.3, "i would"), (0.35, "eye wood")]
    lags, unmatched = turn.partial_lags_ms()
    assert lags == pytest.approx([30.0, 200.0])
    assert unmatched == 1


def test_partial_of_a_frame_not_yet_fed_is_not_timed() -> None:
    """A partial matching a reference frame the stream has not been fed yet is unmatched."""
    turn = timed_turn()
    turn.fed_at = turn.fed_at[:3]
    turn.partials = [(0.05, "i"), (0.06, "i would")]
    lags, unmatched = turn.partial_lags_ms()
    assert lags == pytest.approx([10.0]) and unmatched == 1


def test_a_turn_stays_real_time_only_with_a_prompt_final_and_no_late_partial() -> None:
    """The criterion: a final result within FINAL_MS and every partial within PARTIAL_LAG_MS."""
    turn = timed_turn()
    turn.partials = [(0.07, "i")]
    assert not turn.ok()  # no final result
    turn.final_ms = FINAL_MS
    assert turn.ok()
    turn.final_ms = FINAL_MS + 1
    assert not turn.ok()
    turn.final_ms = 10
    turn.partials = [(0.04 + PARTIAL_LAG_MS / 1000 + 0.01, "i")]
    assert not turn.ok()


def test_a_level_passes_only_when_every_caller_does() -> None:
    """Two callers, one of whose turns was late: 1 of 2 ok, the level fails; percentiles over
    every turn's final time; errors counted."""
    good, late, failed = timed_turn(), timed_turn(), timed_turn()
    good.final_ms, late.final_ms = 100.0, 900.0
    failed.error = "timed out"
    result = level_result([[good], [late, failed]])
    assert result["streams"] == 2 and result["utterances"] == 3
    assert result["streams_ok"] == 1 and result["passed"] is False
    assert result["final_ms_p50"] == 500.0 and result["final_ms_max"] == 900.0
    assert result["errors"] == 1
    assert result["partials"] == 0 and result["partial_lag_ms_max"] is None


def test_concurrency_labels_name_their_engines() -> None:
    """The Korean Vosk label runs the vosk engine; PocketSphinx labels are their own engines."""
    assert ENGINE_OF == {
        "pocketsphinx": "pocketsphinx",
        "pocketsphinx-fast": "pocketsphinx-fast",
        "pocketsphinx-auto": "pocketsphinx-auto",
        "vosk-ko": "vosk",
    }


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Voices:
    return Voices(tmp_path_factory.mktemp("voices"))


def test_a_caller_speaks_sentences_in_turn_pause_apart(voices: Voices) -> None:
    """A caller from sentence 2: sentences 2, 3, ... until 4 s of speech, each its own stream of
    speech plus the endpointing tail, the next PAUSE_S after; the first starts within the
    first second; the reference partials are frame-ordered."""
    turns = channel("pocketsphinx-fast", 2, voices, 4.0, random.Random(5))
    assert 0 <= turns[0].start_tick < 50
    speech = sum(len(t.audio.pcm) / RATE - TAIL_S for t in turns)
    assert speech >= 4.0 and speech - (len(turns[-1].audio.pcm) / RATE - TAIL_S) < 4.0
    for k, (a, b) in enumerate(zip(turns, turns[1:], strict=False)):
        assert b.start_tick == a.start_tick + a.frames + int(PAUSE_S * 50)
        assert len(a.audio.pcm) == (len(voices.piper(SENTENCES[2 + k])) + int(TAIL_S * RATE)) // FRAME * FRAME
    for t in turns:
        assert not t.audio.pcm[-int(TAIL_S * RATE) + FRAME :].any()
        frames = [f for f, _ in t.audio.partials]
        assert frames and frames == sorted(frames)


async def test_one_caller_through_a_real_service_is_measured(voices: Voices) -> None:
    """One caller through a fresh AsrService with one worker process: every figure of the level
    table present, the stream's final result came, partials arrived and matched the lone
    recognizer's, the worker's memory was read."""
    load = Load(levels=(1,), stream_seconds=1.0, asr_workers=1, accurate_streams=1)
    result = await one_level("pocketsphinx-fast", 1, voices, load, random.Random(1))
    assert result["streams"] == 1 and result["utterances"] >= 1
    assert result["errors"] == 0 and result["final_ms_p50"] is not None
    assert result["partials"] > 0 and result["partials_unmatched"] < result["partials"]
    assert result["start_s"] > 0 and result["workers_rss_mb"] > 10
    assert result["tick_late_ms_max"] >= 0 and result["other_processes_cores"] >= 0
