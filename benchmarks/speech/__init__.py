"""The speech benchmark (scripts/bench-speech): ASR speed and concurrency, TTS speed, and reply
latency in a real call, one module a section, plus the report that combines the runs."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmarks.common import percentile


def log(message: str) -> None:
    print(f"bench-speech: {message}", file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile to 0.1 (milliseconds, in this benchmark's tables); None for none."""
    p = percentile(values, q)
    return round(p, 1) if p is not None else None


def spread(values: Sequence[float], key: str, with_max: bool = True) -> dict[str, float | None]:
    """p50, p95 (and the max) of ``values`` under ``key`` with ``{}`` replaced by p50, p95, max."""
    out = {key.format("p50"): pct(values, 50), key.format("p95"): pct(values, 95)}
    if with_max:
        out[key.format("max")] = round(max(values), 1) if values else None
    return out
