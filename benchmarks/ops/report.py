"""ops.json -> ops.md and ops.png. ``build`` turns the runs' raw figures into the summaries and
the targets' verdicts; ``markdown`` and ``plot`` read nothing but what ``build`` made (so the
committed report can be made again from ops.json alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import median, write_report
from benchmarks.ops.measure import overhead_pct, paired_overheads_pct, share_pct, summary_ms

TARGETS = {"health_p99_ms": 10.0, "page_load_ms": 1000.0, "utterance_ms": 500.0, "cpu_overhead_pct": 5.0}
PATHS = ("/healthz", "/readyz")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**not met**")


def health_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per endpoint: each run's p50/p99/max, and the median of the runs' p99 over the runs that
    had all their calls in progress throughout (the others are shown, not counted)."""
    for r in runs:
        r["endpoints"] = {p: {**summary_ms(r["samples_ms"][p]), "statuses": r["statuses"][p]} for p in PATHS}
        r["full"] = r["calls_in_progress_min"] >= r["calls"]
    full = [r for r in runs if r["full"]]
    return {p: {"p99_ms_median": median([r["endpoints"][p]["p99_ms"] for r in full], 3),
                "p99_ms_worst": max((r["endpoints"][p]["p99_ms"] for r in full), default=None),
                "p50_ms_median": median([r["endpoints"][p]["p50_ms"] for r in full], 3),
                "max_ms": max((r["endpoints"][p]["max_ms"] for r in full), default=None),
                "requests": sum(r["endpoints"][p]["n"] for r in full),
                "not_200": sum(n for r in full for s, n in r["statuses"][p].items() if str(s) != "200")}
            for p in PATHS} | {"runs_counted": len(full)}  # fmt: skip


def console_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    loads = [x for r in runs for x in r["page_load_ms"]]
    delays = [x for r in runs for x in r["utterance_delays_ms"]]
    return {
        "page_load_ms": {"n": len(loads), "median": median(loads, 1), "max": max(loads, default=None)},
        "utterance_ms": {"n": len(delays), "median": median(delays, 1), "max": max(delays, default=None)},
    }


def cpu_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: the median CPU s per call over its runs (the process tree, and the server's own
    process); the overhead of each other arm over ``without`` (medians), run by run against the
    ``without`` run placed beside it, and measured on the server's own process alone."""
    tree: dict[str, list[float]] = {}
    main: dict[str, list[float]] = {}
    for r in runs:
        tree.setdefault(r["arm"], []).append(r["cpu_per_call_s"])
        main.setdefault(r["arm"], []).append(r["main_cpu_per_call_s"])
    base, main_base = tree.get("without", []), main.get("without", [])
    return {
        arm: {
            "runs": len(values),
            "cpu_per_call_s": median(values, 3),
            "main_cpu_per_call_s": median(main[arm], 3),
            "overhead_pct": None if arm == "without" else _round(overhead_pct(values, base)),
            "paired_pct": []
            if arm == "without"
            else [round(x, 1) for x in paired_overheads_pct(values, base)],
            "main_overhead_pct": None if arm == "without" else _round(share_pct(main[arm], main_base, base)),
            "spread_pct": _round(spread_pct(values)),
        }
        for arm, values in tree.items()
    }


def spread_pct(values: list[float]) -> float | None:
    """(largest − smallest) / median, in %: how far one arm's runs stray from each other."""
    m = median(values)
    return None if m is None or m <= 0 else (max(values) - min(values)) / m * 100


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """Each target: the figure it is judged on, the bound, met or not (None: not measured). Health:
    the worse endpoint's median of runs' p99; the console: the slowest page load and the slowest
    utterance; CPU: the overhead of the medians."""
    health = summary["health"]
    p99s = [health[p]["p99_ms_median"] for p in PATHS if health[p]["p99_ms_median"] is not None]
    console = summary["console"]
    cpu = summary["cpu"].get("with", {}).get("overhead_pct")
    judged = {
        "health_p99_ms": max(p99s) if len(p99s) == len(PATHS) else None,
        "page_load_ms": console["page_load_ms"]["max"],
        "utterance_ms": console["utterance_ms"]["max"],
        "cpu_overhead_pct": cpu,
    }
    return {k: {"value": v, "target": TARGETS[k], "met": None if v is None else v < TARGETS[k]}
            for k, v in judged.items()}  # fmt: skip


def run_notes(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What did not go as planned in a run: SIPp reporting a failed call, calls the server did
    not end, an operator's request that failed, a health run whose calls dropped."""
    notes = []
    for part, rows in runs.items():
        for i, r in enumerate(rows, 1):
            what = f"{part} run {i}" + (f" ({r['arm']})" if "arm" in r else "")
            if r.get("sipp_exit"):
                notes.append(
                    f"{what}: SIPp exited {r['sipp_exit']} (a call did not follow the script to the end)."
                )
            if r.get("ended", r["calls"]) != r["calls"]:
                notes.append(f"{what}: the server ended {r['ended']} of {r['calls']} calls.")
            if r.get("operator", {}).get("errors"):
                notes.append(f"{what}: the operator's requests failed: {'; '.join(r['operator']['errors'])}")
            if part == "health" and not r["full"]:
                notes.append(
                    f"{what}: calls in progress dropped to {r['calls_in_progress_min']:.0f}: not counted."
                )
    return notes


def build(health: list[dict[str, Any]], console: list[dict[str, Any]], cpu: list[dict[str, Any]],
          meta: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    summary = {"health": health_summary(health), "console": console_summary(console), "cpu": cpu_summary(cpu)}
    runs = {"health": health, "console": console, "cpu": cpu}
    return {"meta": meta, "summary": summary, "targets": targets(summary), "runs": runs,
            "notes": [*meta.get("notes", []), *run_notes(runs)]}  # fmt: skip


def markdown(data: dict[str, Any]) -> str:
    m, s, t, runs = data["meta"], data["summary"], data["targets"], data["runs"]
    h, c, cpu = s["health"], s["console"], s["cpu"]
    with_, without = cpu.get("with", {}), cpu.get("without", {})
    lines = [
        "# Operations: health, console and observability cost (issue 17's targets)",
        "",
        f"`{m['command']}` on {m['date']}, commit {m['commit']}, {m['machine']}, speech: {m['asr']}; "
        f"{m['minutes']} min of runs (plus {m['lock_wait_minutes']} min waiting for the shared sandbox). "
        "Made again from ops.json by `scripts/bench-ops --replot`.",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| /healthz and /readyz < 10 ms at p99 with {m['health_calls']} calls in progress | "
        f"p99 /healthz {_fmt(h['/healthz']['p99_ms_median'], 2)} ms, /readyz "
        f"{_fmt(h['/readyz']['p99_ms_median'], 2)} ms (median of {h['runs_counted']} runs; worst run "
        f"{_fmt(max(h[p]['p99_ms_worst'] or 0 for p in PATHS), 2)} ms) | "
        f"{_verdict(t['health_p99_ms']['met'])} |",
        f"| console page loads < 1 s | median {_fmt(c['page_load_ms']['median'], 0)} ms, slowest "
        f"{_fmt(c['page_load_ms']['max'], 0)} ms ({c['page_load_ms']['n']} loads) | "
        f"{_verdict(t['page_load_ms']['met'])} |",
        f"| a new utterance shown < 500 ms after it is recognized | median "
        f"{_fmt(c['utterance_ms']['median'], 0)} ms, slowest {_fmt(c['utterance_ms']['max'], 0)} ms "
        f"({c['utterance_ms']['n']} utterances) | {_verdict(t['utterance_ms']['met'])} |",
        f"| metrics, console and tracing add < 5 % CPU per call | {_fmt(with_.get('cpu_per_call_s'), 3)} "
        f"against {_fmt(without.get('cpu_per_call_s'), 3)} CPU s per call (medians of "
        f"{with_.get('runs', 0)} and {without.get('runs', 0)} runs): "
        f"{_signed(with_.get('overhead_pct'))} (run by run: "
        f"{', '.join(_signed(x) for x in with_.get('paired_pct', []))}); the server's own process alone: "
        f"{_signed(with_.get('main_overhead_pct'))} | {_verdict(t['cpu_overhead_pct']['met'])} |",
        "",
        "## How it was measured",
        "",
        *m["method"],
        "",
        f"## 1. Health with {m['health_calls']} calls in progress",
        "",
        "| run | calls in progress (min–max) | window | /healthz p50 / p99 / max | /readyz p50 / p99 / max "
        "| not 200 | reply audio per call | replies (mean latency) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs["health"], 1):
        e = r["endpoints"]
        bad = sum(n for p in PATHS for st, n in e[p]["statuses"].items() if str(st) != "200")
        lines.append(
            f"| {i}{'' if r['full'] else ' (not counted)'} | {r['calls_in_progress_min']:.0f}–"
            f"{r['calls_in_progress_max']:.0f} | {r['window_s']:.0f} s | "
            + " | ".join(
                f"{_fmt(e[p]['p50_ms'], 2)} / {_fmt(e[p]['p99_ms'], 2)} / {_fmt(e[p]['max_ms'], 2)} ms"
                for p in PATHS
            )  # fmt: skip
            + f" | {bad} | {r['reply_packets_per_call_s']:.0f} packets/s | {r['replies']} "
            f"({_fmt(r['reply_latency_mean_ms'], 0)} ms) |"
        )
    lines += [
        "",
        f"Counted: {h['/healthz']['requests']} + {h['/readyz']['requests']} requests; slowest of all "
        f"{_fmt(max(h[p]['max_ms'] or 0 for p in PATHS), 2)} ms.",
        "",
        "## 2. Console",
        "",
        "| run | calls | page loads (ms: navigation start to data shown) "
        "| utterances (ms: recognized to shown) |",
        "|---|---|---|---|",
    ]
    for i, r in enumerate(runs["console"], 1):
        loads = ", ".join(f"{x:.0f}" for x in r["page_load_ms"])
        delays = ", ".join(f"{x:.0f}" for x in r["utterance_delays_ms"]) or "none"
        lines.append(f"| {i} | {r['calls']} | {loads} | {delays} |")
    lines += [
        "",
        "## 3. CPU per call, with and without metrics, console and tracing",
        "",
        "| arm | runs | CPU s per call (median) | overhead against without | run by run "
        "| server process alone: CPU s per call, overhead (share of the tree's without) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, a in cpu.items():
        paired = ", ".join(_signed(x) for x in a["paired_pct"]) or "—"
        per_call, main = _fmt(a["cpu_per_call_s"], 3), _fmt(a["main_cpu_per_call_s"], 3)
        lines.append(f"| {arm} | {a['runs']} | {per_call} | {_signed(a['overhead_pct'])} | {paired} | "
                     f"{main}, {_signed(a['main_overhead_pct'])} |")  # fmt: skip
    if without.get("spread_pct") is not None and with_.get("paired_pct"):
        lines += [
            "",
            f"Runs of one arm differ by up to {without['spread_pct']:.1f} % (without) as the machine drifts "
            "between rounds; arms run side by side drift together, so the run-by-run overheads (with: "
            f"{_signed(min(with_['paired_pct']))} to {_signed(max(with_['paired_pct']))}) bound the cost "
            "better than the medians do.",
        ]
    lines += [
        "",
        "| run | arm | calls (ended) | CPU s | per call (server process) | window | scrapes | page refreshes "
        "| streams | spans (traces, KB sent) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs["cpu"], 1):
        o, x = r["operator"], r["otlp"]
        lines.append(
            f"| {i} | {r['arm']} | {r['calls']} ({r['ended']}) | {r['cpu_s']:.2f} | "
            f"{r['cpu_per_call_s']:.3f} ({r['main_cpu_per_call_s']:.3f}) | {r['window_s']:.0f} s | "
            f"{o['scrapes']} | {o['page_refreshes']} | {o['streams']} | "
            f"{x['spans']} ({x['traces']}, {x['bytes'] / 1024:.0f}) |"
        )
    lines += ["", "![health latencies, console delays, CPU per call](ops.png)", ""]
    if data["notes"]:
        lines += ["## Notes", "", *[f"- {n}" for n in data["notes"]], ""]
    return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f} %"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.5))
    for p, color in zip(PATHS, ("tab:blue", "tab:orange"), strict=True):
        for i, r in enumerate(runs["health"]):
            ordered = sorted(r["samples_ms"][p])
            if ordered:
                ys = [(k + 1) / len(ordered) for k in range(len(ordered))]
                ax1.plot(ordered, ys, color=color, alpha=0.7, label=p if i == 0 else None)
    ax1.axvline(TARGETS["health_p99_ms"], color="red", linestyle="--", label="target (p99)")
    ax1.axhline(0.99, color="grey", linestyle=":")
    ax1.set_xscale("log")
    ax1.set(
        xlabel="ms", ylabel="fraction of requests", title=f"health, {data['meta']['health_calls']} calls up"
    )
    ax1.legend(loc="lower right")
    loads = [x for r in runs["console"] for x in r["page_load_ms"]]
    delays = [x for r in runs["console"] for x in r["utterance_delays_ms"]]
    ax2.scatter([0] * len(loads), loads, alpha=0.6)
    ax2.scatter([1] * len(delays), delays, alpha=0.6)
    ax2.hlines([TARGETS["page_load_ms"], TARGETS["utterance_ms"]], [-0.3, 0.7], [0.3, 1.3], colors="red",
               linestyles="--")  # fmt: skip
    ax2.set_xticks([0, 1], ["page load", "utterance shown"])
    ax2.set_yscale("log")
    ax2.set(ylabel="ms", title="console (targets dashed)")
    arms = list(dict.fromkeys(r["arm"] for r in runs["cpu"]))
    by_arm = {arm: [r["cpu_per_call_s"] for r in runs["cpu"] if r["arm"] == arm] for arm in arms}
    for n in range(max((len(v) for v in by_arm.values()), default=0)):  # one line per round of arms
        xs = [k for k, arm in enumerate(arms) if n < len(by_arm[arm])]
        ax3.plot(xs, [by_arm[arms[k]][n] for k in xs], color="grey", alpha=0.5, marker="o",
                 label="a round of runs" if n == 0 else None)  # fmt: skip
    for k, arm in enumerate(arms):
        m = median(by_arm[arm])
        if m is not None:
            ax3.hlines(m, k - 0.3, k + 0.3, colors="black", label="median" if k == 0 else None)
    ax3.set_xticks(range(len(arms)), [a.replace(" only", "\nonly") for a in arms])
    ax3.set(ylabel="CPU s per call", title="server CPU per call, process tree")
    if arms:
        ax3.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(out: Path, data: dict[str, Any]) -> str:
    """ops.json, ops.md and ops.png in ``out``; returns the markdown."""
    return write_report(out, "ops", data, markdown, plot)


def replot(out: Path) -> str:
    """ops.json's summaries, ops.md and ops.png made again from the runs in ops.json."""
    data = json.loads((out / "ops.json").read_text())
    runs = data["runs"]
    return write(out, build(runs["health"], runs["console"], runs["cpu"], data["meta"]))
