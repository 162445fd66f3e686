"""The media benchmark's medians over runs, its console table, and the media.json, media.md and
media.png it writes (also redrawn from a saved media.json)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import median

TARGET_CPU_PCT = 1.0
TARGET_JITTER_P99_MS = 2.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every figure over the runs of one concurrency, to 3 decimals."""
    out: dict[str, Any] = {"calls": runs[0]["calls"], "runs": len(runs)}
    for k in runs[0]:
        if k != "calls":
            out[k] = median([r[k] for r in runs], 3)
    return out


def console_table(summary: list[dict[str, Any]]) -> str:
    lines = [
        f"{'calls':>5} {'received':>9} {'lost':>5} {'jit p50':>8} {'jit p99':>8} {'offs p99':>9} "
        f"{'cpu/call':>9} {'mem/call':>9}"
    ]
    for s in summary:
        lines.append(
            f"{s['calls']:5d} {s['packets_received']:9.0f} {s['packets_lost']:5.0f} "
            f"{s['jitter_p50_ms']:6.2f}ms {s['jitter_p99_ms']:6.2f}ms {s['slot_offset_p99_ms']:7.2f}ms "
            f"{s['cpu_per_call_pct']:8.2f}% {s['mem_per_call_kib']:6.0f}KiB"
        )
    return "\n".join(lines)


def command(concurrency: str, seconds: float, runs: int) -> str:
    return f"scripts/bench-media --concurrency {concurrency} --seconds {seconds:g} --runs {runs}"


def parse_command(cmd: str) -> tuple[str, float, int]:
    """(concurrency, seconds, runs) back from a ``command()`` line."""
    words = cmd.split()
    return words[2], float(words[4]), int(words[6])


def markdown(meta: dict[str, Any], summary: list[dict[str, Any]], runs: int) -> str:
    floor = meta["platform_floor_pct"]
    lines = [
        "# Media benchmark",
        "",
        f"Regenerate with `{meta['command']}` (sandbox Asterisk running). {meta['date']}, "
        f"{meta['cpus']} cores, Python {meta['python']}. Medians of {runs} runs; each run is a fresh "
        "server process with N concurrent echo calls (50 packets/s each way per call).",
        "",
        "| calls | packets received | lost | pacing jitter p50 | jitter p99 | slot offset p99 "
        "| CPU per call | memory per call |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['calls']} | {s['packets_received']:.0f} | {s['packets_lost']:.0f} | "
            f"{s['jitter_p50_ms']:.2f} ms | {s['jitter_p99_ms']:.2f} ms | "
            f"{s['slot_offset_p99_ms']:.2f} ms | "
            f"{s['cpu_per_call_pct']:.2f} % | {s['mem_per_call_kib']:.0f} KiB |"
        )
    lines += [
        "",
        "Targets: no loss on loopback, pacing jitter p99 ≤ 2 ms, ≤ 1 % of a core per call.",
        "",
        "- *Pacing jitter*: for each pair of consecutive outbound packets of a call, "
        "|time between their sends − 20 ms × slots between them| (IPDV, RFC 3393, on departure "
        "times), merged over all calls.",
        "- *Slot offset*: |send time − the packet's 20 ms slot|. One clock drives every call, so "
        "the k-th call in a tick leaves after k−1 other sends (about 80 µs each on loopback, "
        "where the kernel delivers to Asterisk inside our sendto): a steady latency, not jitter.",
        "- *CPU per call*: the server process's CPU time (user + system, from /proc) over the "
        "window while all calls echo, divided by N. It includes the fixed cost of the media "
        "clock and event loop, which one call carries alone.",
        "- *Memory per call*: the server's RSS growth over its idle RSS, divided by N.",
        f"- *Platform floor*: a bare asyncio loop doing one call's packet rates (a 20 ms "
        f"timerfd, 50 packets/s in and out, no RTP work) takes {floor:.2f} % of a core on this "
        "machine: the part of the one-call figure no media code can remove.",
        "",
        "![media benchmark](media.png)",
        "",
    ]
    return "\n".join(lines)


def plot(path: Path, summary: list[dict[str, Any]], floor: float) -> bool:
    """CPU per call and pacing figures against concurrency; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    calls = [s["calls"] for s in summary]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(calls, [s["cpu_per_call_pct"] for s in summary], "o-", label="CPU per call")
    ax1.plot([1], [floor], "kx", label="platform floor, 1 call (bare loop)")
    ax1.axhline(TARGET_CPU_PCT, color="grey", ls="--", label="target 1 %")
    ax1.set_xlabel("concurrent calls")
    ax1.set_ylabel("% of one core")
    ax1.legend()
    ax1.set_ylim(bottom=0)
    ax2.plot(calls, [s["jitter_p50_ms"] for s in summary], "o-", label="jitter p50")
    ax2.plot(calls, [s["jitter_p99_ms"] for s in summary], "s-", label="jitter p99")
    ax2.plot(calls, [s["slot_offset_p99_ms"] for s in summary], "^:", label="slot offset p99")
    ax2.axhline(TARGET_JITTER_P99_MS, color="grey", ls="--", label="target jitter p99 2 ms")
    ax2.set_xlabel("concurrent calls")
    ax2.set_ylabel("outbound pacing jitter (ms)")
    ax2.legend()
    ax2.set_ylim(bottom=0)
    fig.suptitle("ivr-server media path (echo calls via Asterisk 22, loopback)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(
    out: Path,
    summary: list[dict[str, Any]],
    raw: list[dict[str, Any]],
    concurrency: str,
    seconds: float,
    runs: int,
    floor: float,
    date: str | None = None,
) -> None:
    """media.json (meta, medians, every run), media.md and media.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": command(concurrency, seconds, runs),
        "date": date or time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform_floor_pct": floor,
    }
    (out / "media.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "runs": raw}, indent=1) + "\n"
    )
    (out / "media.md").write_text(markdown(meta, summary, runs))
    if not plot(out / "media.png", summary, floor):
        print("bench-media: matplotlib not installed; no plot (pip install matplotlib)", file=sys.stderr)


def replot(out: Path) -> None:
    """Redraw media.md and media.png (and rewrite media.json) from ``out``/media.json."""
    saved = json.loads((out / "media.json").read_text())
    meta = saved["meta"]
    concurrency, seconds, runs = parse_command(meta["command"])
    write_outputs(
        out,
        saved["summary"],
        saved["runs"],
        concurrency,
        seconds,
        runs,
        meta["platform_floor_pct"],
        meta["date"],
    )
