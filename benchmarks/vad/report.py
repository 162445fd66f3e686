"""The VAD benchmark's tables (markdown), and the vad.json / vad.md it writes."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from benchmarks.vad.measure import Plan
from benchmarks.vad.streams import NOISE_ONLY_DBFS, NOISE_ONLY_S

GROUPS = ["clean", "white", "pink", "babble", "hum", "clipped"]
CHOICE = """## The choice: `auto` = mixed (Silero gated by energy), p >= 0.5 to start, 0.35 to stay, \
min_speech_ms 20

- **Silero** is the only detector whose frame accuracy holds from clean to 5 dB SNR in white and pink
  noise, under 0 dB mains hum and when clipped, with no false speech starts on any stationary
  noise. It calls background talkers speech (they are), and its probability trails the end of a
  word by about 100-200 ms (FA on clean non-speech 6-7 %, end decided ~200 ms later than energy).
- **Energy** (adaptive floor) is cheap and its floor rises under steady babble, but it loses short
  or quiet words in noise (misses up to 19 % at min_speech_ms 100, 5 dB SNR frames fall below the
  margin). Its frame accuracy is flattered here: the reference labels are energy-based too.
- **WebRTC** is cheapest but at aggressiveness 1-2 it calls 10-18 % of clean non-speech frames
  speech and starts on white and pink noise (15-21 false starts/min); at 3 it still starts on pink
  noise (21/min at min_speech_ms <= 60) and breaks down under hum and clipping.
- **Mixed** (min of Silero and energy with a 6 dB margin) keeps Silero's noise robustness and zero
  false starts on stationary noise, cuts Silero's tail (clean FA 0.1 %, end decided ~200 ms sooner)
  and rejects more babble. It costs Silero + energy per frame (140-270 µs per 20 ms frame over runs
  on a busy 2-core machine: 0.7-1.4 % of a core per call, 20 calls 0.15-0.3 core) and starts
  10-20 ms later than Silero alone.
- Hysteresis (stay at 0.35) cut false starts in babble by 3-4x at the cost of ~10 ms on the end
  decision; single digits never split at any setting, so end_silence_ms (700) is not something this
  data set can measure: it is the usual pause allowance between words of a digit string.
- min_speech_ms 20 keeps the speech-start decision within 100 ms of the onset at p90 (barge-in must
  stop the prompt within 100 ms) with no false starts on stationary noise; 40 and 60 buy nothing
  on this data but cost 20-40 ms. Impulsive noise (clicks) was not measured: a prompt that sees
  false barge-ins can raise it.
"""


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def group_accuracy(row: dict[str, Any], group: str) -> float:
    """Mean frame accuracy over a group's conditions (``white 20``, ``white 10``, ... for white)."""
    return float(
        statistics.mean(v["accuracy"] for k, v in row["conditions"].items() if k.split()[0] == group)
    )


def _starts(e: dict[str, Any]) -> str:
    return f"{fmt(e['onset_latency_ms_median'], '.0f')}/{fmt(e['onset_latency_ms_p90'], '.0f')}"


def _noise(e: dict[str, Any]) -> str:
    ns = e["noise_false_starts_per_min"]
    return f"{ns['line']:.1f}, {ns['white']:.1f}, {ns['pink']:.1f}, {ns['hum']:.1f} / {ns['babble']:.1f}"


def tables(res: dict[str, Any], plan: Plan) -> str:
    """Per rate, the summary table at the default min_speech_ms; the min_speech_ms sweep and the
    per-condition frame accuracy at 8 kHz (else the first rate)."""
    lines = []
    ms = plan.default_min_speech
    for rate in plan.rates:
        r = res[str(rate)]
        lines += [
            f"### {rate} Hz{' (µ-law)' if rate == 8000 else ''}: "
            f"min_speech_ms={ms}, end_silence_ms={plan.end_silence}",
            "",
            "| variant | " + " | ".join(f"acc {g}" for g in GROUPS) + " | recall clean | FA clean | "
            "start p50/p90 ms | miss | end p50 ms | split | "
            "false starts/min: line, white, pink, hum / babble | µs/frame |",
            "|---" * (len(GROUPS) + 9) + "|",
        ]
        for v in plan.variants:
            row, e = r[v.label], r[v.label][f"min_speech_{ms}"]
            clean = row["conditions"]["clean"]
            lines.append(
                f"| {v.label} | "
                + " | ".join(fmt(group_accuracy(row, g), ".3f") for g in GROUPS)
                + f" | {clean['recall']:.3f} | {clean['false_alarm']:.3f}"
                + f" | {_starts(e)} | {e['miss_rate']:.1%} | {fmt(e['end_latency_ms_median'], '.0f')}"
                + f" | {e['split_rate']:.1%} | {_noise(e)} | {r['us_per_frame'][v.detector]:.0f} |"
            )
        lines.append("")
    lines += ["### min_speech_ms sweep (8 kHz when measured, else the first rate)", ""]
    rate_key = "8000" if 8000 in plan.rates else str(plan.rates[0])
    lines += [
        "| variant | min_speech_ms | start p50/p90 ms | miss "
        "| false starts/min (line, white, pink, hum / babble) |",
        "|---|---|---|---|---|",
    ]
    for v in plan.variants:
        for m in plan.min_speech:
            e = res[rate_key][v.label][f"min_speech_{m}"]
            lines.append(f"| {v.label} | {m} | {_starts(e)} | {e['miss_rate']:.1%} | {_noise(e)} |")
    lines += ["", "### Frame accuracy per condition (8 kHz when measured)", ""]
    conds = list(res[rate_key][plan.variants[0].label]["conditions"])
    lines += ["| variant | " + " | ".join(conds) + " |", "|---" * (len(conds) + 1) + "|"]
    for v in plan.variants:
        c = res[rate_key][v.label]["conditions"]
        lines.append(f"| {v.label} | " + " | ".join(f"{c[k]['accuracy']:.3f}" for k in conds) + " |")
    return "\n".join(lines) + "\n"


def command(plan: Plan) -> str:
    """The script invocation that regenerates these results."""
    return (
        f"scripts/bench-vad --runs {plan.runs} --files {plan.files} --seed {plan.seed} "
        f"--rates {','.join(map(str, plan.rates))} --min-speech {','.join(map(str, plan.min_speech))} "
        f"--default-min-speech {plan.default_min_speech} --end-silence {plan.end_silence}"
    )


def write(out: Path, res: dict[str, Any], plan: Plan, table: str, seconds: float) -> None:
    """vad.json (meta and merged results) and vad.md (tables and the choice they support)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = command(plan)
    meta = {
        "command": cmd,
        "runs": plan.runs,
        "files_per_run": plan.files,
        "seed": plan.seed,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seconds": round(seconds, 1),
        "noise_only_dbfs": NOISE_ONLY_DBFS,
        "noise_only_s": NOISE_ONLY_S,
    }
    (out / "vad.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1) + "\n")
    (out / "vad.md").write_text(
        "# Voice activity detection benchmark\n\n"
        f"Regenerate: `{cmd}` ({meta['seconds']:.0f} s on {meta['machine']}).\n"
        f"Medians over {plan.runs} runs of {plan.files} FSDD recordings each; the method is in the "
        "script's docstring. acc = frame accuracy (20 ms frames, p >= threshold against the reference), "
        "recall/FA = share of speech/non-speech frames called speech, start = SpeechStarted.detected_ms - "
        "true onset, end = SpeechEnded.detected_ms - true offset (includes end_silence_ms), split = "
        "utterances cut in two, false starts/min on 20 s noise-only streams at "
        f"{NOISE_ONLY_DBFS:g} dBFS (line = -65 dBFS line noise; babble is speech, so starts there are "
        "expected).\n\n" + table + "\n" + CHOICE
    )
