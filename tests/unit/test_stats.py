"""RTP receive statistics (RFC 3550 A.1/A.8) and the deviation histogram."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ivr_server.media.stats import DeviationHistogram, RtpReceiveStats


def feed(stats: RtpReceiveStats, seqs: list[int], start: int = 0) -> None:
    for i, seq in enumerate(seqs):
        stats.update(seq & 0xFFFF, (start + i) * 160, i * 0.02)


def test_in_order_stream_has_no_loss() -> None:
    s = RtpReceiveStats(8000)
    feed(s, list(range(100, 200)))
    assert (s.received, s.expected, s.lost, s.gaps) == (100, 100, 0, 0)


def test_a_gap_counts_its_missing_packets() -> None:
    s = RtpReceiveStats(8000)
    feed(s, [1, 2, 3, 7, 8])
    assert (s.expected, s.lost, s.gaps, s.gap_packets) == (8, 3, 1, 3)


def test_sequence_wraparound_is_not_loss() -> None:
    s = RtpReceiveStats(8000)
    feed(s, [65533, 65534, 65535, 0, 1, 2])
    assert (s.expected, s.lost) == (6, 0)


def test_duplicates_and_late_packets() -> None:
    s = RtpReceiveStats(8000)
    feed(s, [10, 11, 11, 13, 12, 14])
    assert s.duplicates == 1 and s.reordered == 1 and s.lost == 0


def test_a_sender_restart_resynchronises() -> None:
    s = RtpReceiveStats(8000)
    feed(s, [10, 11, 12, 40000, 40001])
    assert s.resyncs == 1 and s.lost == 0 and s.expected == 2


def test_jitter_is_zero_for_perfect_pacing_and_tracks_variation() -> None:
    steady = RtpReceiveStats(8000)
    for i in range(200):
        steady.update(i, i * 160, 5.0 + i * 0.020)
    assert steady.jitter_ms < 0.01
    wobbly = RtpReceiveStats(8000)
    for i in range(200):
        wobbly.update(i, i * 160, 5.0 + i * 0.020 + (0.004 if i % 2 else 0.0))
    assert 3.0 < wobbly.jitter_ms < 4.5  # |D| is 4 ms every packet


@given(st.lists(st.integers(0, 500), min_size=1, max_size=300))
def test_loss_is_never_negative_nor_above_expected(order: list[int]) -> None:
    s = RtpReceiveStats(8000)
    feed(s, [1000 + x for x in order])
    assert 0 <= s.lost <= s.expected


def test_histogram_percentiles() -> None:
    h = DeviationHistogram()
    for ms in [0.05] * 98 + [1.55, 7.0]:
        h.add(ms)
    assert h.percentile(50) == 0.1
    assert h.percentile(99) == 1.6
    assert h.max_ms == 7.0
    other = DeviationHistogram()
    other.add(60.0)  # beyond the last bin: kept as the overflow bin and the max
    h.merge(other)
    assert h.count == 101 and h.max_ms == 60.0


def test_histograms_merge_exactly_through_their_snapshots() -> None:
    """The benchmark merges calls' stored snapshots; that must equal one histogram of all."""
    a, b, both = DeviationHistogram(), DeviationHistogram(), DeviationHistogram()
    for i in range(300):
        ms = (i * 7 % 23) / 10
        (a if i % 3 else b).add(ms)
        both.add(ms)
    merged = DeviationHistogram.from_snapshot(a.snapshot())
    merged.merge(DeviationHistogram.from_snapshot(b.snapshot()))
    assert merged.count == both.count == 300
    assert [merged.percentile(q) for q in (50, 90, 99)] == [both.percentile(q) for q in (50, 90, 99)]
