"""How loaded the server and its machine are now: what admission by load decides on.

Three signals, each a caller would feel if it went on rising: the event loop's lag (every call's
audio and timers share the loop), the recognizer's final latency (a decoding backlog shows there
first: the caller waits for an answer), and the machine's CPU (Asterisk and the recognizer's
worker processes too, so it is read from /proc/stat rather than from this process). Each is kept
over a short window of recent samples; a signal with no samples yet is None (unknown, not zero).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

LAG_WINDOW_S = 10.0
ASR_WINDOW_S = 30.0
CPU_WINDOW_S = 5.0
CPU_EVERY_S = 0.5  # /proc/stat read at most this often


@dataclass(frozen=True)
class Load:
    loop_lag_ms: float | None  # 95th percentile of the heartbeat's lag over the last LAG_WINDOW_S
    asr_final_ms: float | None  # 95th percentile of recent final-result latencies
    cpu: float | None  # the machine's busy share of all its cores over the last CPU_WINDOW_S

    def figures(self) -> dict[str, float | None]:
        return {k: (round(v, 3) if v is not None else None) for k, v in asdict(self).items()}


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def cpu_counters(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot; None where /proc/stat cannot be read."""
    try:
        first = stat.read_text(encoding="ascii").split("\n", 1)[0].split()
        ticks = [int(x) for x in first[1:]]
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if first[:1] != ["cpu"] or len(ticks) < 4:
        return None
    total = sum(ticks[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return total - idle, total


class LoadMeter:
    """Fed by the heartbeat (``beat``) and by each recognition (``asr_final``); read by ``now``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, stat: Path = Path("/proc/stat")) -> None:
        self._clock = clock
        self._stat = stat
        self._lags: deque[tuple[float, float]] = deque()
        self._finals: deque[tuple[float, float]] = deque()
        self._cpu: deque[tuple[float, int, int]] = deque()

    def beat(self, lag_s: float) -> None:
        """One heartbeat's lag; also samples the CPU counters when due."""
        now = self._clock()
        self._lags.append((now, lag_s))
        _prune(self._lags, now - LAG_WINDOW_S)
        if not self._cpu or now - self._cpu[-1][0] >= CPU_EVERY_S:
            counters = cpu_counters(self._stat)
            if counters is not None:
                self._cpu.append((now, *counters))
                while len(self._cpu) > 2 and self._cpu[1][0] <= now - CPU_WINDOW_S:
                    self._cpu.popleft()  # keeps one sample at or before the window's start

    def asr_final(self, latency_s: float) -> None:
        now = self._clock()
        self._finals.append((now, latency_s))
        _prune(self._finals, now - ASR_WINDOW_S)

    def now(self) -> Load:
        at = self._clock()
        _prune(self._lags, at - LAG_WINDOW_S)
        _prune(self._finals, at - ASR_WINDOW_S)
        lag = percentile([s for _, s in self._lags], 95)
        final = percentile([s for _, s in self._finals], 95)
        return Load(
            lag * 1000 if lag is not None else None, final * 1000 if final is not None else None, self._busy()
        )

    def _busy(self) -> float | None:
        if len(self._cpu) < 2:
            return None
        (_, busy0, total0), (_, busy1, total1) = self._cpu[0], self._cpu[-1]
        return (busy1 - busy0) / (total1 - total0) if total1 > total0 else None


def _prune(samples: deque[tuple[float, float]], before: float) -> None:
    while samples and samples[0][0] < before:
        samples.popleft()
