"""capacity.json -> capacity.md and capacity.png. ``build`` summarizes each level's raw figures
(measure.summarize) and judges them; ``markdown`` and ``plot`` read nothing but what ``build``
made, so ``replot`` makes the committed report again from capacity.json alone."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.capacity.measure import (
    LATE_MS,
    LOOP_LAG_P99_MS,
    REPLY_P95_MS,
    max_calls,
    mem_per_call_mb,
    summarize,
)
from benchmarks.common import write_report

TARGET_CALLS = 24  # issue 18: on this 2-core machine
TARGET_MB_PER_CALL = 15.0
TARGET_READY_S = 5.0  # `ivr-server run` to serving calls
SATURATED_PCT = 90.0  # the machine's CPU this busy leaves nothing for a burst
LOOP_CORE_PCT = 80.0  # the event-loop thread this busy is one core's worth of Python


def build(raws: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """The report's data: each level summarized and judged (its raw figures kept under "raw"),
    max_calls, memory per call, and the limiting level: the first that failed, or the last."""
    levels = [{**summarize(raw), "raw": raw} for raw in raws]
    limiting = next((lv for lv in levels if lv["failed_because"]), levels[-1] if levels else None)
    return {
        "commit": meta["commit"],
        "cores": meta["cores"],
        "max_calls": max_calls(levels),
        "levels": levels,
        "mem_per_call_mb": mem_per_call_mb(levels),
        "ready_s": ready_s(levels),
        "limiting_calls": None if limiting is None else limiting["calls"],
        "meta": meta,
    }


def ready_s(levels: list[dict[str, Any]]) -> float | None:
    """The median, over the levels, of the time from `ivr-server run` to serving calls (ARI
    reconciled, /readyz 200); the store's migration before it is not counted: an admin runs it
    once per upgrade, not at every start."""
    times = sorted(t for lv in levels if (t := lv["raw"].get("ready_s")) is not None)
    return None if not times else round(statistics.median(times), 2)


def _started(raw: dict[str, Any]) -> str:
    if raw.get("ready_s") is None:  # a run before the two were told apart: both together
        return _fmt(raw.get("start_s"), 1, " s")
    return f"{raw['ready_s']:.1f} s (+ {_fmt(raw.get('migrate_s'), 1, ' s')})"


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def _met(met: bool | None) -> str:
    return "not measured" if met is None else ("**met**" if met else "**not met**")


def limits(lv: dict[str, Any]) -> list[str]:
    """What the level's figures say limits it, each with its evidence: the machine's CPU (and its
    largest user), the event loop, the slowest part of the server's reply, RTP pacing."""
    found = []
    machine = lv.get("machine_cpu_pct")
    if machine is not None and machine >= SATURATED_PCT:
        users = {
            "recognition (the recognizer's worker processes)": lv.get("asr_workers_cpu_pct"),
            "the server's own Python process (event loop, synthesis and intent threads)":
                (lv.get("server_cpu_pct") or 0) - (lv.get("asr_workers_cpu_pct") or 0),
            "Asterisk": lv.get("asterisk_cpu_pct"),
            "the callers' side (SIPp, tcpdump, this bench and its demo bank)": lv.get("load_cpu_pct"),
        }  # fmt: skip
        name, pct = max(users.items(), key=lambda kv: kv[1] or 0)
        found.append(f"the CPU: the machine was {machine:.0f} % busy, most of it {name} ({_fmt(pct)} %)")
    lag, loop = lv.get("loop_lag_p99_ms"), lv.get("loop_thread_core_pct")
    if (lag is not None and lag >= LOOP_LAG_P99_MS) or (loop is not None and loop >= LOOP_CORE_PCT):
        found.append(
            f"the event loop: its thread used {_fmt(loop)} % of a core, lag p99 {_fmt(lag, 1)} ms "
            "(Python overhead in the server's one process)"
        )
    p95 = lv.get("reply_p95_ms")
    latency = ((lv["raw"].get("metrics") or {}).get("latency")) or {}
    parts = {"recognition's final words": "asr_final", "the intent decision": "intent",
             "the first synthesized audio": "tts_first_audio"}  # fmt: skip
    timed = {k: float(ms) for k, v in parts.items() if (ms := latency.get(v, {}).get("p95_ms")) is not None}
    if (p95 is None or p95 > REPLY_P95_MS) and timed:
        name, ms = max(timed.items(), key=lambda kv: kv[1])
        found.append(f"the reply: of its parts the server times, {name} takes longest (p95 {ms:.0f} ms)")
    late, skipped, lost = (lv.get(k) or 0 for k in ("rtp_late", "rtp_skipped_frames", "rtp_lost"))
    skips = lv["raw"].get("clock_skips") or 0
    if late or skipped or skips or lost:
        found.append(
            f"RTP pacing: {lost} packets lost (both ways), {late} late and {skipped} frames skipped at "
            f"the callers; the server's media clock skipped slots {skips} times"
        )
    if not found:
        found.append(
            f"nothing measured here is saturated (the machine {_fmt(machine)} % busy, loop lag p99 "
            f"{_fmt(lag, 1)} ms)"
        )
    return found


def profile(lv: dict[str, Any], cores: int) -> list[str]:
    """The limiting level's profile: where CPU went, where the reply's time went, the event loop
    and RTP pacing, and what limits it."""
    raw = lv["raw"]

    def f(key: str, digits: int = 0) -> str:
        return _fmt(lv.get(key), digits)

    verdict = "failed: " + "; ".join(lv["failed_because"]) if lv["failed_because"] else "passed (none failed)"
    lines = [f"{lv['calls']} calls, {verdict}.", ""]
    if raw.get("cpu"):
        lines.append(
            f"- CPU {lv['cpu_over']} ({lv['cpu_window_s']:.0f} s): the machine {f('machine_cpu_pct')} % busy "
            f"({cores} cores); the server {f('server_cpu_pct')} % of the machine: its recognizer workers "
            f"{f('asr_workers_cpu_pct')} %, its other threads (synthesis, intent model, listener) "
            f"{f('other_threads_cpu_pct')} %, its event-loop thread {f('loop_thread_core_pct')} % of one "
            f"core; Asterisk {f('asterisk_cpu_pct')} %; SIPp, tcpdump, this bench and its demo bank "
            f"{f('load_cpu_pct')} %."
        )
    metrics = raw.get("metrics") or {}
    latency = metrics.get("latency") or {}

    def part(key: str) -> str:
        got = latency.get(key) or {}
        return f"{_fmt(got.get('mean_ms'))} / {_fmt(got.get('p95_ms'))} ms ({got.get('n', 0)})"

    lines.append(
        f"- Reply at the callers: p50 {f('reply_p50_ms')} ms, p95 {f('reply_p95_ms')} ms, slowest "
        f"{f('reply_max_ms')} ms over {lv['turns_timed']} turns timed. The server's own timings (mean / "
        f"p95, count): recognizer's final words {part('asr_final')}, intent {part('intent')}, first "
        f"synthesized audio {part('tts_first_audio')}, its reply latency {part('reply')}."
    )
    sent, jitter = metrics.get("rtp_sent") or 0, metrics.get("send_jitter_over_2ms") or 0
    lines.append(
        f"- Event loop lag p99 {f('loop_lag_p99_ms', 1)} ms. RTP: {lv['rtp_received']} packets reached "
        f"the callers, {lv['rtp_lost_to_caller']} lost on the way, {lv['rtp_late']} late (> {LATE_MS:.0f} "
        f"ms), {lv['rtp_skipped_frames']} frames skipped; {f('rtp_lost_to_server')} lost on the way to the "
        f"server; of the {sent:.0f} the server sent, {jitter:.0f} left more than 2 ms off their 20 ms "
        f"slot; its media clock skipped slots {raw.get('clock_skips', 0)} times."
    )
    lines.append("- What limits it: " + "; ".join(limits(lv)) + ".")
    return lines


def notes(data: dict[str, Any]) -> list[str]:
    """What did not go as planned: SIPp's errors, a server that failed or left calls unended, a
    level that passed above one that failed (the ramp is noisy there)."""
    out = []
    failed_below = False
    for lv in data["levels"]:
        raw = lv["raw"]
        if raw.get("sipp_errors"):
            out.append(f"{lv['calls']} calls: SIPp exited {raw['sipp_exit']}: {raw['sipp_errors'][-300:]!r}")
        if raw.get("ended") is not None and raw["ended"] < lv["answered"]:
            out.append(
                f"{lv['calls']} calls: the server ended {raw['ended']} of {lv['answered']} answered calls."
            )
        if failed_below and not lv["failed_because"]:
            out.append(f"{lv['calls']} calls passed above a level that failed: the limit is not sharp here.")
        failed_below = failed_below or bool(lv["failed_because"])
    return out


def markdown(data: dict[str, Any]) -> str:
    m, levels = data["meta"], data["levels"]
    best = data["max_calls"]
    mem = data["mem_per_call_mb"]
    ready = data.get("ready_s")  # absent from runs before it was measured
    lines = [
        "# Capacity: concurrent voice calls on one server (issue 18)",
        "",
        f"`{m['command']}` on {m['date']}, commit {data['commit']}, {m['machine']}, {data['cores']} "
        f"cores, speech: {m['asr']}; {m['minutes']} min of levels (plus {m['lock_wait_minutes']} min "
        "waiting for the shared sandbox). Made again from capacity.json by "
        "`scripts/bench-capacity --replot`."
        + (
            f" The warm-up call's server (caches as this machine had them) was ready after "
            f"{m['warm_up_ready_s']:.1f} s."
            if m.get("warm_up_ready_s") is not None
            else ""
        ),
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| max_calls >= {TARGET_CALLS}: every call completed, reply p95 <= {REPLY_P95_MS:.0f} ms, no RTP "
        f"lost, loop lag p99 < {LOOP_LAG_P99_MS:.0f} ms | {best} calls | "
        f"{_met(best >= TARGET_CALLS if levels else None)} |",
        f"| <= {TARGET_MB_PER_CALL:.0f} MB memory per extra call | {_fmt(mem, 1, ' MB')} (slope of the "
        f"peak over the levels) | {_met(None if mem is None else mem <= TARGET_MB_PER_CALL)} |",
        f"| ready <= {TARGET_READY_S:.0f} s after start | {_fmt(ready, 1, ' s')} (`ivr-server run` to ARI "
        f"reconciled and /readyz 200, median over the levels) | "
        f"{_met(None if ready is None else ready <= TARGET_READY_S)} |",
        "",
        "| calls | answered | completed | reply p50 / p95 (turns timed) | turns unanswered / talked over "
        "| RTP lost (to callers + to server) / late / frames skipped | loop lag p99 | CPU: machine / server "
        "(workers, loop thread of a core) | memory idle → peak | ready (+ migration) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        verdict = "passed" if not lv["failed_because"] else "**failed**: " + "; ".join(lv["failed_because"])
        lines.append(
            f"| {lv['calls']} | {lv['answered']} | {lv['completed']} | {_fmt(lv['reply_p50_ms'])} / "
            f"{_fmt(lv['reply_p95_ms'])} ms ({lv['turns_timed']}) | {lv['turns_unanswered']} / "
            f"{lv['turns_overlapped']} | {_fmt(lv['rtp_lost'])} ({lv['rtp_lost_to_caller']} + "
            f"{_fmt(lv['rtp_lost_to_server'])}) / {lv['rtp_late']} / {lv['rtp_skipped_frames']} | "
            f"{_fmt(lv['loop_lag_p99_ms'], 1, ' ms')} | {_fmt(lv.get('machine_cpu_pct'))} % / "
            f"{_fmt(lv.get('server_cpu_pct'))} % ({_fmt(lv.get('asr_workers_cpu_pct'))} %, "
            f"{_fmt(lv.get('loop_thread_core_pct'))} %) | {_fmt(lv.get('mem_idle_mb'))} → "
            f"{_fmt(lv.get('mem_peak_mb'))} MB | {_started(lv['raw'])} | {verdict} |"
        )
    lines += ["", "## How it was measured", "", *m["method"], ""]
    limiting = next((lv for lv in levels if lv["calls"] == data["limiting_calls"]), None)
    if limiting is not None:
        lines += ["## The limiting level", "", *profile(limiting, data["cores"]), ""]
    lines += ["![reply latency, loop lag, CPU and memory by calls](capacity.png)", ""]
    found = notes(data)
    if found:
        lines += ["## Notes", "", *[f"- {n}" for n in found], ""]
    return "\n".join(lines)


def write(out: Path, data: dict[str, Any]) -> str:
    """capacity.json, capacity.md and capacity.png in ``out``; returns the markdown."""
    return write_report(out, "capacity", data, markdown, plot)


def replot(out: Path) -> str:
    """capacity.json's summaries and verdicts, capacity.md and capacity.png made again from the
    raw figures in capacity.json."""
    data = json.loads((out / "capacity.json").read_text())
    return write(out, build([lv["raw"] for lv in data["levels"]], data["meta"]))


def _series(levels: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(float(lv["calls"]), float(lv[key])) for lv in levels if lv.get(key) is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = data["levels"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    cpu = [
        ("machine_cpu_pct", "machine busy"),
        ("server_cpu_pct", "server"),
        ("asr_workers_cpu_pct", "recognizer workers"),
        ("loop_thread_core_pct", "loop thread (of a core)"),
    ]
    panels = [
        (axes[0][0], [("reply_p50_ms", "p50"), ("reply_p95_ms", "p95")], REPLY_P95_MS, "reply, ms"),
        (axes[0][1], [("loop_lag_p99_ms", "p99")], LOOP_LAG_P99_MS, "event-loop lag, ms"),
        (axes[1][0], cpu, 100.0, "CPU, % of the machine"),
        (axes[1][1], [("mem_peak_mb", "peak"), ("mem_idle_mb", "idle")], None, "server memory (PSS), MB"),
    ]  # fmt: skip
    for ax, keys, limit, title in panels:
        for key, label in keys:
            xs, ys = _series(levels, key)
            ax.plot(xs, ys, marker="o", label=label)
        if limit is not None:
            ax.axhline(limit, color="red", linestyle="--", label="limit")
        if data["max_calls"]:
            ax.axvline(
                data["max_calls"], color="green", linestyle=":", label=f"max_calls {data['max_calls']}"
            )
        ax.set(xlabel="concurrent calls", title=title)
        ax.legend(loc="best", fontsize="small")
    xs, ys = _series([lv for lv in levels if lv["answered"] == lv["calls"]], "mem_peak_mb")  # as fitted
    if data["mem_per_call_mb"] is not None and xs:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        fit = [my + data["mem_per_call_mb"] * (x - mx) for x in xs]
        axes[1][1].plot(xs, fit, color="grey", linestyle="--", label=f"{data['mem_per_call_mb']} MB per call")
        axes[1][1].legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
