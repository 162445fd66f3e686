"""The energy speech meter: levels and durations in, segments out."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.media.audio import frame_dbfs
from ivr_server.speech.speech_meter import SpeechMeter, SpeechSegment

LOUD, QUIET = -20.0, -60.0


def run(levels: list[float], **kw: int) -> tuple[SpeechMeter, list[SpeechSegment]]:
    meter = SpeechMeter(-40.0, kw.get("min_ms", 100), kw.get("hangover_ms", 300))
    segments = [s for s in (meter.feed(level, 20) for level in levels) if s]
    last = meter.finish()
    return meter, segments + ([last] if last else [])


def test_a_burst_is_one_segment_with_its_true_bounds() -> None:
    _, segments = run([QUIET] * 10 + [LOUD] * 25 + [QUIET] * 30)
    assert segments == [SpeechSegment(200, 700)]


def test_a_click_shorter_than_the_minimum_is_not_speech() -> None:
    meter, segments = run([QUIET] * 5 + [LOUD] * 4 + [QUIET] * 30)
    assert segments == [] and meter.speech_ms == 0


def test_a_pause_shorter_than_the_hangover_does_not_split() -> None:
    _, segments = run([LOUD] * 20 + [QUIET] * 10 + [LOUD] * 20 + [QUIET] * 20)
    assert segments == [SpeechSegment(0, 1000)]


def test_a_long_pause_splits() -> None:
    meter, segments = run([LOUD] * 20 + [QUIET] * 20 + [LOUD] * 20 + [QUIET] * 20)
    assert segments == [SpeechSegment(0, 400), SpeechSegment(800, 1200)]
    assert meter.speech_ms == 800 and meter.segments == 2


def test_finish_closes_speech_still_going() -> None:
    _, segments = run([QUIET] * 5 + [LOUD] * 20)
    assert segments == [SpeechSegment(100, 500)]


def test_frame_levels() -> None:
    assert frame_dbfs(np.zeros(160, np.int16)) == -120.0
    full = np.full(160, 32767, np.int16)
    assert abs(frame_dbfs(full)) < 0.01
    assert abs(frame_dbfs(full // 10) + 20.0) < 0.1


@given(st.lists(st.sampled_from([LOUD, QUIET]), max_size=400))
def test_segments_are_ordered_disjoint_and_add_up(levels: list[float]) -> None:
    meter, segments = run(levels)
    for a, b in zip(segments, segments[1:], strict=False):
        assert a.end_ms <= b.start_ms
    assert all(0 <= s.start_ms < s.end_ms <= meter.position_ms for s in segments)
    assert meter.speech_ms == sum(s.duration_ms for s in segments) <= meter.position_ms
