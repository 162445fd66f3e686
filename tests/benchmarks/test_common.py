"""benchmarks/common.py: the median and percentile every benchmark's tables are built from."""

from __future__ import annotations

import math
import random

import numpy as np

from benchmarks.common import median, percentile


def test_median_skips_gaps_and_rounds_when_asked() -> None:
    """None and NaN are gaps, not values; ``digits`` rounds the result; no values give None."""
    assert median([3.0, None, 1.0, math.nan, 2.0]) == 2.0
    assert median([1.0, 2.0, 4.0, 8.0]) == 3.0  # even count: the mean of the middle two
    assert median([0.12345, 0.54321], digits=3) == 0.333
    assert median([]) is None
    assert median([None, math.nan]) is None


def test_percentile_interpolates_linearly_between_ranks() -> None:
    """The q-th percentile of sorted values at rank (n - 1) * q / 100, linear between
    neighbours: the ends are the extremes, order does not matter, no values give None."""
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert math.isclose(percentile(values, 95) or 0.0, 3.85)
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_percentile_agrees_with_numpys_default() -> None:
    """Same figures as numpy.percentile's default (linear) method, which earlier benchmark
    results were computed with."""
    rng = random.Random(3)
    for n in (2, 5, 20, 101):
        values = [rng.uniform(0, 1000) for _ in range(n)]
        for q in (5, 50, 90, 95, 99):
            assert math.isclose(percentile(values, q) or 0.0, float(np.percentile(values, q)), rel_tol=1e-12)


def test_commit_names_this_checkouts_head() -> None:
    """A figure is tied to the commit it was measured on: HEAD's short hash, marked +dirty only
    when tracked files differ from it."""
    import subprocess

    from benchmarks.common import REPO, commit

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    assert commit() == git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
