"""soak.json -> soak.md and soak.png. ``build`` judges the raw run; ``markdown`` and ``plot`` read
nothing but what ``build`` made, so ``replot`` makes the committed report again from soak.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import page_head, write_report
from benchmarks.soak.measure import GROWTH_PCT, LEAK_CALLS, Sample, leaks, memory_growth, verdict


def build(raw: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    samples = [Sample(**s) for s in raw.get("samples", [])]
    counts = raw.get("calls") or {"successful": 0, "failed": 0}
    result: dict[str, Any] = {
        "commit": meta["commit"],
        "calls_at_once": raw["calls_at_once"],
        "minutes": raw["minutes"],
        "calls": {"placed": raw["placed"], **counts, "ended_by_server": raw.get("ended_by_server", 0)},
        "memory": memory_growth(samples),
        "leaks": leaks(raw.get("idle_before") or {}, raw.get("idle_after") or {}, raw["placed"]),
        "server_error": raw.get("server_error"),
        "problems": raw.get("problems", {}),
        "raw": raw,
        "meta": meta,
    }
    if raw.get("server_error"):
        result["failed_because"] = [f"the server failed: {raw['server_error']}"]
    else:
        result["failed_because"] = verdict(result)
    return result


def _min(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.3g}"


def markdown(data: dict[str, Any]) -> str:
    meta, calls, mem, leak = data["meta"], data["calls"], data["memory"], data["leaks"]
    passed = not data["failed_because"]
    lines = [
        *page_head(
            "Soak: calls kept up for half an hour", data["commit"], meta, f"; {meta['minutes_taken']} minutes"
        ),
        "## Result",
        "",
        f"**{'Passed' if passed else 'Failed'}**"
        + ("." if passed else ": " + "; ".join(data["failed_because"]) + "."),
        "",
        "| Figure | Measured | Target |",
        "|---|---|---|",
        f"| Calls completed (SIPp) | {calls['successful']} of {calls['placed']} "
        f"({calls['failed']} failed) | all |",
        f"| Calls the server ended | {calls['ended_by_server']} | all |",
        f"| Memory after warm-up (median of {_min(mem.get('window_s'))} min from minute "
        f"{_min(mem.get('warmup_s'))}) | {mem['after_warmup_mb']} MB | |",
        f"| Memory at the end (median of the last {_min(mem.get('window_s'))} min) | {mem['end_mb']} MB | |",
        f"| Memory growth after warm-up | {mem['growth_pct']} % | <= {GROWTH_PCT:.0f} % |",
    ]
    for name, label in (
        ("fds", "Open file descriptors"),
        ("threads", "Threads"),
        ("tasks", "Event-loop tasks"),
    ):
        x = leak[name]
        lines.append(
            f"| {label} at idle, before / after | {x['before']} / {x['after']} (grew {x['grew']}) "
            f"| grew < {leak['allowed']} (1 per {LEAK_CALLS} calls) |"
        )
    problems = {k: v for k, v in data.get("problems", {}).items() if v}
    lines += [
        "",
        "Problems the server logged: "
        + (", ".join(f"`{k}` {v}" for k, v in problems.items()) or "none")
        + ".",
        "",
        "![memory, descriptors and calls over the soak](soak.png)",
        "",
    ]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = data["raw"].get("samples", [])
    minutes = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    panels = [
        (axes[0], [("pss_mb", "PSS over the process tree")], "server memory, MB"),
        (
            axes[1],
            [("fds", "open file descriptors"), ("threads", "threads"), ("tasks", "loop tasks")],
            "count",
        ),
        (axes[2], [("calls", "calls up")], "calls"),
    ]
    for ax, keys, title in panels:
        for key, label in keys:
            xs = [m for m, s in zip(minutes, samples, strict=True) if s.get(key) is not None]
            ys = [s[key] for s in samples if s.get(key) is not None]
            ax.plot(xs, ys, label=label)
        ax.set(title=title)
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    mem = data["memory"]
    if mem.get("warmup_s") is not None:
        axes[0].axvline(mem["warmup_s"] / 60, color="grey", linestyle=":", label="end of warm-up")
    axes[2].set(xlabel="minutes into the soak")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(out: Path, data: dict[str, Any]) -> str:
    return write_report(out, "soak", data, markdown, plot)


def replot(out: Path) -> str:
    data = json.loads((out / "soak.json").read_text())
    return write(out, data)
