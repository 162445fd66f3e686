"""Stream statistics: RFC 3550 sequence/loss/jitter tracking and a send-lateness histogram."""

from __future__ import annotations

from typing import Any

_MAX_DROPOUT = 3000  # a forward jump larger than this is a new stream (RFC 3550 A.1)
_MAX_MISORDER = 100


class RtpReceiveStats:
    """Counts for one inbound RTP stream: received, lost by sequence, gaps, reordering, jitter."""

    __slots__ = (
        "rate",
        "received",
        "duplicates",
        "reordered",
        "gaps",
        "gap_packets",
        "resyncs",
        "_base_seq",
        "_max_seq",
        "_cycles",
        "_last_transit",
        "_jitter",
    )

    def __init__(self, sample_rate: int) -> None:
        self.rate = sample_rate
        self.received = 0
        self.duplicates = 0
        self.reordered = 0
        self.gaps = 0
        self.gap_packets = 0
        self.resyncs = 0
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._last_transit: float | None = None
        self._jitter = 0.0

    def update(self, sequence: int, timestamp: int, arrival_s: float) -> None:
        if self.received == 0:
            self._base_seq = self._max_seq = sequence
        else:
            delta = (sequence - self._max_seq) & 0xFFFF
            if delta == 0:
                self.duplicates += 1
                return
            if delta < _MAX_DROPOUT:
                if sequence < self._max_seq:
                    self._cycles += 1 << 16
                if delta > 1:
                    self.gaps += 1
                    self.gap_packets += delta - 1
                self._max_seq = sequence
            elif delta <= 0x10000 - _MAX_MISORDER:
                # A jump no network makes: the sender restarted its sequence. Count from here.
                self.resyncs += 1
                self._base_seq = self._max_seq = sequence
                self._cycles = 0
                self.received = 0
                self._last_transit = None
            else:
                self.reordered += 1
                self.received += 1
                return
        self.received += 1
        transit = arrival_s * self.rate - timestamp
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            self._jitter += (d - self._jitter) / 16.0
        self._last_transit = transit

    @property
    def expected(self) -> int:
        if self.received == 0:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self.rate

    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "expected": self.expected,
            "lost": self.lost,
            "gaps": self.gaps,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "resyncs": self.resyncs,
            "jitter_ms": round(self.jitter_ms, 3),
        }


class DeviationHistogram:
    """Distribution of timing deviations: fixed 0.1 ms bins up to 50 ms, constant memory
    however long the call."""

    __slots__ = ("_bins", "count", "max_ms")
    BIN_MS = 0.1
    BINS = 500

    def __init__(self) -> None:
        self._bins = [0] * (self.BINS + 1)
        self.count = 0
        self.max_ms = 0.0

    def add(self, late_ms: float) -> None:
        late_ms = max(late_ms, 0.0)
        self._bins[min(int(late_ms / self.BIN_MS), self.BINS)] += 1
        self.count += 1
        self.max_ms = max(self.max_ms, late_ms)

    def merge(self, other: DeviationHistogram) -> None:
        for i, n in enumerate(other._bins):
            self._bins[i] += n
        self.count += other.count
        self.max_ms = max(self.max_ms, other.max_ms)

    def percentile(self, q: float) -> float:
        """Upper edge of the bin holding the q-th percentile (ms); 0 when empty."""
        if self.count == 0:
            return 0.0
        rank = q / 100.0 * self.count
        seen = 0
        for i, n in enumerate(self._bins):
            seen += n
            if seen >= rank and n:
                return round(min((i + 1) * self.BIN_MS, self.max_ms), 3)
        return self.max_ms

    def snapshot(self) -> dict[str, Any]:
        """Summary plus the non-empty bins, so several calls can be merged exactly later."""
        return {
            "frames": self.count,
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(self.max_ms, 2),
            "bins": {str(i): n for i, n in enumerate(self._bins) if n},
        }

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> DeviationHistogram:
        h = cls()
        for index, n in snapshot.get("bins", {}).items():
            h._bins[int(index)] += int(n)
            h.count += int(n)
        h.max_ms = float(snapshot.get("max_ms", 0.0))
        return h
