"""The benchmark's arithmetic, apart from anything it measures: latency summaries, CPU ticks read
from /proc/<pid>/stat texts and summed over a process tree, the with/without overhead, and which
console turns count for the utterance delay. Pure functions: tests give them made-up inputs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import median, percentile

CLK_TCK = os.sysconf("SC_CLK_TCK")


def summary_ms(samples_ms: Sequence[float]) -> dict[str, Any]:
    """n, p50, p99 and max of latencies in ms (rounded to µs); None figures for no samples."""
    p50, p99 = percentile(samples_ms, 50), percentile(samples_ms, 99)
    return {
        "n": len(samples_ms),
        "p50_ms": None if p50 is None else round(p50, 3),
        "p99_ms": None if p99 is None else round(p99, 3),
        "max_ms": round(max(samples_ms), 3) if samples_ms else None,
    }


@dataclass(frozen=True)
class Stat:
    """What the benchmark needs of one /proc/<pid>/stat line (times in clock ticks)."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int  # of its children that have exited and been waited for
    cstime: int

    @property
    def ticks(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> Stat:
    """One /proc/<pid>/stat line. The command name (field 2, in parentheses) may hold spaces and
    parentheses: the fields are counted after its last ")". ValueError for anything else."""
    head, sep, tail = text.rpartition(")")
    if not sep or "(" not in head:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()  # fields[0] is the state (field 3 of proc(5))
    if len(fields) < 15:
        raise ValueError(f"too few fields in /proc/{pid}/stat: {len(fields)}")
    ppid, utime, stime, cutime, cstime = (int(fields[i]) for i in (1, 11, 12, 13, 14))
    return Stat(pid, ppid, utime, stime, cutime, cstime)


def tree_of(stats: Iterable[Stat], root: int) -> list[Stat]:
    """``root`` and every live descendant, each once; empty when ``root`` is not among ``stats``."""
    by_parent: dict[int, list[Stat]] = {}
    found: Stat | None = None
    for s in stats:
        by_parent.setdefault(s.ppid, []).append(s)
        if s.pid == root:
            found = s
    tree: list[Stat] = []
    todo, seen = [found] if found is not None else [], set()
    while todo:
        s = todo.pop()
        if s.pid in seen:  # a pid reused during the scan
            continue
        seen.add(s.pid)
        tree.append(s)
        todo.extend(by_parent.get(s.pid, ()))
    return tree


def tree_ticks(stats: Iterable[Stat], root: int) -> int:
    """CPU ticks of ``root`` and every live descendant, each with what its exited children used
    (a child counts once: while alive in its own ticks, once waited for in its parent's
    cutime/cstime). 0 when ``root`` is not among ``stats``."""
    return sum(s.ticks for s in tree_of(stats, root))


def read_stats(proc: Path = Path("/proc")) -> list[Stat]:
    """Every process's stat now (processes gone while reading are skipped)."""
    stats = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stats.append(parse_stat((entry / "stat").read_text()))
            except (OSError, ValueError):
                pass
    return stats


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of process ``root`` and its descendants so far."""
    return tree_ticks(read_stats(), root) / CLK_TCK


def cpu_s(root: int) -> tuple[float, float]:
    """CPU seconds so far of process ``root`` with its descendants, and of ``root``'s own threads
    alone (the server's: its event loop, metrics listener, console and trace exporter; not the
    recognizer's worker processes), read at one moment."""
    stats = read_stats()
    own = next((s.utime + s.stime for s in stats if s.pid == root), 0)
    return tree_ticks(stats, root) / CLK_TCK, own / CLK_TCK


def cpu_per_call_s(cpu_before_s: float, cpu_after_s: float, calls: int) -> float:
    """CPU seconds per call over a window in which ``calls`` calls ran."""
    if calls <= 0:
        raise ValueError("no calls in the window")
    if cpu_after_s < cpu_before_s:
        raise ValueError(f"CPU time went backwards ({cpu_before_s} -> {cpu_after_s}): another process?")
    return (cpu_after_s - cpu_before_s) / calls


def overhead_pct(with_s: Sequence[float], without_s: Sequence[float]) -> float | None:
    """How much more CPU per call the arm with the features takes: the medians' difference over
    the median without them, in %. None without figures on both sides."""
    w, wo = median(with_s), median(without_s)
    if w is None or wo is None or wo <= 0:
        return None
    return (w - wo) / wo * 100


def share_pct(with_s: Sequence[float], without_s: Sequence[float], whole_s: Sequence[float]) -> float | None:
    """The medians' difference of a part (the server's own process) as a share of the median
    whole (its process tree) without: the overhead measured where the features run, apart from
    the recognizer's workers, whose CPU they do not touch but whose run-to-run spread is larger."""
    w, wo, whole = median(with_s), median(without_s), median(whole_s)
    if w is None or wo is None or whole is None or whole <= 0:
        return None
    return (w - wo) / whole * 100


def paired_overheads_pct(with_s: Sequence[float], without_s: Sequence[float]) -> list[float]:
    """Each run's overhead against the run of the other arm placed beside it (A B A B ...): the
    spread of these says how far the medians' overhead can be trusted."""
    return [(w - wo) / wo * 100 for w, wo in zip(with_s, without_s, strict=False) if wo > 0]


def prometheus_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The sum of the samples of ``name`` (exactly that name: a histogram's ``_sum`` is another)
    in a Prometheus text page whose labels include ``labels``; None when there are none."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        rest = line[len(name) :]
        if rest[:1] not in (" ", "{"):
            continue
        body, _, value = rest.rpartition(" ")
        if labels and not all(f'{k}="{v}"' in body for k, v in labels.items()):
            continue
        total += float(value)
        found = True
    return total if found else None


def utterance_delays_ms(records: Iterable[Mapping[str, Any]], since: float) -> list[float]:
    """Delays from an utterance recognized to the console page showing it, in ms. ``records``:
    what the page saw of each turn on its transcript stream: ``seq``, ``role``, ``outcome``,
    ``recognized`` (the turn's time, the server's clock), ``appended`` (added to the page) and
    ``shown`` (the next frame; None if none came), both the same machine's clock, epoch s. Only
    the caller's spoken turns recognized after ``since`` count (the stream replays earlier ones
    when it opens); a turn seen twice (a stream opened again) counts at its first showing."""
    first: dict[int, float] = {}
    for r in records:
        if r["role"] != "caller" or r["outcome"] != "speech" or float(r["recognized"]) < since:
            continue
        seen = float(r["shown"] if r.get("shown") is not None else r["appended"])
        delay = (seen - float(r["recognized"])) * 1000
        seq = int(r["seq"])
        first[seq] = min(first.get(seq, delay), delay)
    return [first[seq] for seq in sorted(first)]
