"""The soak's arithmetic, apart from anything it runs: a sample of the server, memory growth
after warm-up, leaks between two idle readings, and the verdict. Pure functions: tests give
them hand-made samples."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

GROWTH_PCT = 5.0  # issue 18: memory after warm-up may not grow more than this
WARMUP_S = 300.0  # the soak's first minutes: pools fill to the busiest moment, caches warm
WINDOW_S = 300.0  # memory is the median of a window this long (it breathes with the calls)
# A leak of one descriptor or task per call shows as hundreds over a soak; pools that fill to a
# bound (connections kept alive) move by a few. Allowed: under one per LEAK_CALLS calls.
LEAK_CALLS = 100


@dataclass(frozen=True)
class Sample:
    """The server at one moment: seconds into the soak, memory (PSS over its process tree), open
    file descriptors and threads over the tree, tasks on its event loop, calls up."""

    t_s: float
    pss_mb: float
    fds: int
    threads: int
    tasks: int | None
    calls: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_in(samples: Sequence[Sample], start_s: float, end_s: float) -> float | None:
    """Median memory of the samples taken in [start_s, end_s); None when there are none."""
    values = [s.pss_mb for s in samples if start_s <= s.t_s < end_s]
    return statistics.median(values) if values else None


def memory_growth(
    samples: Sequence[Sample], warmup_s: float = WARMUP_S, window_s: float = WINDOW_S
) -> dict[str, Any]:
    """Memory just after warm-up (the median of the window that starts there) against memory at
    the end (the median of the last window), and the growth between them in percent. A soak
    shorter than warm-up plus two windows compares what it has: the halves after warm-up."""
    if not samples:
        return {"after_warmup_mb": None, "end_mb": None, "growth_pct": None}
    end = max(s.t_s for s in samples)
    if end - warmup_s < 2 * window_s:  # too short for two whole windows: halves of what is left
        warmup_s = min(warmup_s, end / 2)
        window_s = (end - warmup_s) / 2
    first = median_in(samples, warmup_s, warmup_s + window_s)
    last = median_in(samples, end - window_s, end + 1)
    growth = None if first is None or last is None or first <= 0 else (last - first) / first * 100
    return {
        "after_warmup_mb": None if first is None else round(first, 1),
        "end_mb": None if last is None else round(last, 1),
        "growth_pct": None if growth is None else round(growth, 2),
        "warmup_s": round(warmup_s),
        "window_s": round(window_s),
    }


def leaks(before: Mapping[str, int | None], after: Mapping[str, int | None], calls: int) -> dict[str, Any]:
    """Each count at idle after the soak less the same at idle before it (after the warm-up
    round), and whether that is a leak: at least one per LEAK_CALLS calls (at least one)."""
    allowed = max(1, math.ceil(calls / LEAK_CALLS))
    found: dict[str, Any] = {"allowed": allowed}
    for name in ("fds", "threads", "tasks"):
        a, b = before.get(name), after.get(name)
        grew = None if a is None or b is None else b - a
        found[name] = {"before": a, "after": b, "grew": grew, "leak": grew is not None and grew >= allowed}
    return found


def verdict(result: Mapping[str, Any]) -> list[str]:
    """Why the soak failed (empty: it passed): a call not completed, memory grown over
    GROWTH_PCT after warm-up (or not measured), a descriptor, thread or task leak."""
    why = []
    calls = result["calls"]
    if calls["placed"] == 0:
        why.append("no call was placed")
    if calls["failed"] or calls["successful"] != calls["placed"]:
        why.append(
            f"{calls['placed'] - calls['successful']} of {calls['placed']} calls not completed by SIPp"
        )
    if calls["ended_by_server"] < calls["placed"]:
        why.append(f"the server ended {calls['ended_by_server']} of {calls['placed']} calls")
    growth = result["memory"]["growth_pct"]
    if growth is None:
        why.append("memory growth not measured")
    elif growth > GROWTH_PCT:
        why.append(f"memory grew {growth:.1f} % after warm-up (more than {GROWTH_PCT:.0f} %)")
    for name in ("fds", "threads", "tasks"):
        leak = result["leaks"][name]
        if leak["leak"]:
            why.append(f"{name} grew by {leak['grew']} over {calls['placed']} calls")
    return why


def calls_placed(minutes: float, calls: int, call_s: float) -> int:
    """Calls to place so that ``calls`` stay up for ``minutes`` (each lasts ``call_s``)."""
    if minutes <= 0 or calls < 1 or call_s <= 0:
        raise ValueError("a soak needs minutes > 0, calls >= 1 and a call length > 0")
    return max(calls, math.ceil(minutes * 60 / call_s * calls))
