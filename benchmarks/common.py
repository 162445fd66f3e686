"""Small helpers every benchmark uses: medians and percentiles that tolerate gaps, and what
the machine was (so a figure is never quoted without its context)."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def median(values: Sequence[float | None], digits: int | None = None) -> float | None:
    """Median of the values that are not None (None when none are)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None
    m = statistics.median(present)
    return round(m, digits) if digits is not None else m


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def commit() -> str:
    """The repository's HEAD, with ``+dirty`` when the work tree has changes (besides the
    benchmarks' own reports, which a run writes as it goes)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        reports = [f":!benchmarks/*.{ext}" for ext in ("json", "md", "png")]
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *reports)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> int:
    return len(os.sched_getaffinity(0))


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def write_report(
    out: Path,
    name: str,
    data: Mapping[str, Any],
    markdown: Callable[[Any], str],
    plot: Callable[[Any, Path], None],
) -> str:
    """A benchmark's report in ``out``: ``name``.json (its data), and the .md page and .png plot
    made from that data alone (so --replot can make them again); returns the page."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    text = markdown(data)
    (out / f"{name}.md").write_text(text)
    plot(data, out / f"{name}.png")
    return text


def page_head(title: str, commit: str, meta: Mapping[str, Any], took: str = "") -> list[str]:
    """A benchmark page's opening lines: the title, how to make it again (``took``: how long, as
    "; 32 minutes"), when, at which commit, on what machine and recognizer, then the method."""
    return [
        f"# {title}",
        "",
        f"Regenerate: `{meta['command']}` (sandbox Asterisk running{took}). Run {meta['date']} at commit "
        f"{commit}, {meta['machine']}, {meta['cores']} cores; ASR: {meta['asr']}.",
        "",
        "## Method",
        "",
        *meta["method"],
        "",
    ]
