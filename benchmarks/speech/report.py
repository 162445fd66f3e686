"""The speech benchmark's report: medians across runs (``combine``), the command that reproduces
them, the markdown tables and notes, and the written speech.json / speech.md / speech.png."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.common import median
from benchmarks.speech import spread
from benchmarks.speech.asr import SEARCH
from benchmarks.speech.audio import LOUD_DBFS
from benchmarks.speech.call import BENCH_APP, BENCH_EXTEN, measured
from benchmarks.speech.concurrency import CONCURRENCY_LABELS, FINAL_MS, PARTIAL_LAG_MS, PAUSE_S, TAIL_S
from ivr_server.config import Settings

SECTIONS = ("asr", "concurrency", "tts", "call")
# Targets from the issue.
TARGET_STREAMS = 20
TARGET_TTFA_MS = 100
TARGET_P50_MS, TARGET_P95_MS = 450, 700


def combine(runs: list[dict[str, Any]], calls_per_run: int) -> dict[str, Any]:
    """Medians across runs, section by section (the call section also pools every call)."""
    out: dict[str, Any] = {}
    asr_runs = [r["asr"] for r in runs if "asr" in r]
    if asr_runs:
        cases = []
        for i, case in enumerate(asr_runs[0]["cases"]):
            row = {k: case[k] for k in ("case", "audio", "clips", "audio_s", "score")}
            for key in ("rtf_wall", "rtf_cpu", "finish_ms_p50", "error_rate"):
                row[key] = median([r["cases"][i][key] for r in asr_runs], 4)
            cases.append(row)
        scaling = {
            k: median([r["two_thread_speedup"][k] for r in asr_runs], 2)
            for k in asr_runs[0]["two_thread_speedup"]
        }
        out["asr"] = {"cases": cases, "two_thread_speedup": scaling}
    conc_runs = [r["concurrency"] for r in runs if "concurrency" in r]
    if conc_runs:
        out["concurrency"] = {
            label: {
                "max_realtime_streams": median([r[label]["max_realtime_streams"] for r in conc_runs], 1),
                "per_run": [r[label]["max_realtime_streams"] for r in conc_runs],
            }
            for label in conc_runs[0]
        }
    tts_runs = [r["tts"] for r in runs if "tts" in r]
    if tts_runs:
        out["tts"] = {}
        for name, first in tts_runs[0].items():
            if "unavailable" in first:
                out["tts"][name] = first
                continue
            row = {"version": first["version"], "reps_per_run": first["reps"]}
            for key in ("load_s", "ttfa_short_ms", "ttfa_paragraph_ms", "rtf_engine", "rtf_pipeline"):
                row[key] = median([r[name][key] for r in tts_runs], 4)
            out["tts"][name] = row
    call_runs = [r["call"] for r in runs if "call" in r]
    if call_runs:
        out["call"] = combine_calls(call_runs, calls_per_run)
    return out


def combine_calls(call_runs: list[dict[str, Any]], calls_per_run: int) -> dict[str, Any]:
    keys = [k for k in call_runs[0]["summary"] if k not in ("calls", "measured", "failed", "attempt")]
    row = {k: median([r["summary"][k] for r in call_runs], 1) for k in keys}
    calls = [c for r in call_runs for c in r["calls"]]
    pooled_caller = [c["reply_first_loud_ms"] for c in calls if measured(c)]
    pooled_server = [c["server_latency_ms"] for c in calls if c.get("server_latency_ms") is not None]
    row.update(
        log_call_id_wrong=sum(r["summary"]["log_call_id_wrong"] for r in call_runs),
        ari_app_taken=sum(r["summary"].get("ari_app_taken", 0) for r in call_runs),
        clock_skipped_frames=sum(r["summary"].get("clock_skipped_frames", 0) for r in call_runs),
        calls_per_run=calls_per_run,
        measured=sum(r["summary"]["measured"] for r in call_runs),
        placed=sum(r["summary"]["calls"] for r in call_runs),
        **spread(pooled_caller, "pooled_caller_{}_ms", with_max=False),
        **spread(pooled_server, "pooled_server_{}_ms", with_max=False),
    )
    return row


def command_of(args: argparse.Namespace) -> str:
    """The command line that reproduces a run: the options that matter to its sections."""
    cmd = f"scripts/bench-speech --runs {args.runs} --seed {args.seed}"
    if args.only != ",".join(SECTIONS):
        cmd += f" --only {args.only}"
    if "call" in args.only:
        cmd += f" --calls {args.calls} --call-concurrency {args.call_concurrency}"
    if "concurrency" in args.only:
        cmd += f" --levels {args.levels} --stream-seconds {args.stream_seconds:g}"
        if args.concurrency_engines != ",".join(CONCURRENCY_LABELS):
            cmd += f" --concurrency-engines {args.concurrency_engines}"
        if args.accurate_streams != Settings.model_fields["asr_accurate_streams"].default:
            cmd += f" --accurate-streams {args.accurate_streams}"
    if args.coqui_model:
        cmd += f" --coqui-model {args.coqui_model}"
    return cmd


def fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}{unit}" if isinstance(value, int | float) else str(value)


def asr_table(asr: dict[str, Any]) -> list[str]:
    lines = [
        "### ASR real-time factor, one stream at 8 kHz (20 ms chunks)",
        "",
        "| engine | audio | clips | RTF (wall) | RTF (CPU) | finish() p50 | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in asr["cases"]:
        lines.append(
            f"| {c['case']} | {c['audio']} ({c['audio_s']:.0f} s) | {c['clips']} | "
            f"{fmt(c['rtf_wall'], '', 3)} | "
            f"{fmt(c['rtf_cpu'], '', 3)} | {fmt(c['finish_ms_p50'], ' ms')} | "
            f"{c['score']} {fmt(100 * c['error_rate'], ' %')} |"
        )
    speedups = ", ".join(f"{k} {v:.2f}x" for k, v in asr["two_thread_speedup"].items())
    return [
        *lines,
        "",
        f"Two threads decoding at once, throughput over one thread: {speedups}"
        " (2.00x: decoding releases the GIL; 1.00x: it holds it).",
        "",
    ]


def concurrency_table(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    lines = [
        f"### Concurrent recognizers that stay real time ({meta['asr_workers']} workers, "
        f"{meta['cpus']} cores)",
        "",
        "| engine | backend | largest N (median) | per run | CPU ceiling | target |",
        "|---|---|---:|---|---:|---:|",
    ]
    # What the cores could decode at best: cores / CPU RTF of one stream (the first case of the
    # engine in the ASR section: no grammar), whatever else the machine runs.
    rtf = {c["case"]: c["rtf_cpu"] for c in reversed(summary.get("asr", {}).get("cases", []))}
    for label, c in summary["concurrency"].items():
        backend = "processes" if label in SEARCH else "threads"
        target = f"≥ {TARGET_STREAMS}" if label in SEARCH else "–"
        runs = ", ".join(str(x) for x in c["per_run"])
        ceiling = meta["asr_workers"] / rtf[label] if rtf.get(label) else None
        lines.append(
            f"| {label} | {backend} | {fmt(c['max_realtime_streams'])} | {runs} | {fmt(ceiling, '', 1)} "
            f"| {target} |"
        )
    return [
        *lines,
        "",
        "*CPU ceiling*: workers / the ASR section's CPU real-time factor of one stream (no grammar): the "
        "most streams the workers could decode if nothing else ran and nothing were lost to scheduling.",
        "",
    ]


def tts_table(tts: dict[str, Any]) -> list[str]:
    lines = [
        "### TTS at 8 kHz, no cache",
        "",
        "| engine | load | first audio, short sentence | first audio, paragraph | RTF engine "
        "| RTF pipeline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in tts.items():
        if "unavailable" in t:
            lines.append(f"| {name} | unavailable: {t['unavailable']} | | | | |")
            continue
        lines.append(
            f"| {name} | {fmt(t['load_s'], ' s', 2)} | {fmt(t['ttfa_short_ms'], ' ms')} | "
            f"{fmt(t['ttfa_paragraph_ms'], ' ms')} | {fmt(t['rtf_engine'], '', 3)} | "
            f"{fmt(t['rtf_pipeline'], '', 3)} |"
        )
    return [*lines, ""]


def call_table(c: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    return [
        f"### Reply latency in a real call (voice flow, endpointing silence "
        f"{meta['vad_end_silence_ms']} ms included)",
        "",
        "| measure | p50 | p95 | max | target |",
        "|---|---:|---:|---:|---|",
        f"| caller side: end of speech → first loud reply packet | {fmt(c['caller_p50_ms'], ' ms')} | "
        f"{fmt(c['caller_p95_ms'], ' ms')} | {fmt(c['caller_max_ms'], ' ms')} | p50 ≤ {TARGET_P50_MS} ms, "
        f"p95 ≤ {TARGET_P95_MS} ms |",
        f"| server's own (turns.latency_ms) | {fmt(c['server_p50_ms'], ' ms')} | "
        f"{fmt(c['server_p95_ms'], ' ms')} | {fmt(c['server_max_ms'], ' ms')} | |",
        f"| — endpoint detection (silence + VAD) | {fmt(c['endpoint_detect_p50_ms'], ' ms')} | "
        f"{fmt(c['endpoint_detect_p95_ms'], ' ms')} | | |",
        f"| — ASR final result after the endpoint | {fmt(c['asr_final_p50_ms'], ' ms')} | "
        f"{fmt(c['asr_final_p95_ms'], ' ms')} | | |",
        f"| — TTS: say() → first reply packet sent | {fmt(c['tts_first_audio_p50_ms'], ' ms')} | "
        f"{fmt(c['tts_first_audio_p95_ms'], ' ms')} | | |",
        f"| caller side: end of speech → first reply packet of any level | "
        f"{fmt(c['reply_first_packet_p50_ms'], ' ms')} | {fmt(c['reply_first_packet_p95_ms'], ' ms')} | | |",
        "",
        f"Medians over runs of each run's percentiles; {c['measured']} of {c['placed']} calls measured "
        f"({c['calls_per_run']} per run, up to {meta['call_concurrency']} at once). All calls pooled: caller "
        f"side p50 {fmt(c['pooled_caller_p50_ms'], ' ms')}, p95 {fmt(c['pooled_caller_p95_ms'], ' ms')}; "
        f"server p50 {fmt(c['pooled_server_p50_ms'], ' ms')}, p95 {fmt(c['pooled_server_p95_ms'], ' ms')}. "
        f"Another client took the `{BENCH_APP}` ARI application from the benchmark's server "
        f"{c.get('ari_app_taken', 0)} time(s) (a shared sandbox: those calls are lost, not measured); the "
        f"media clock skipped {c.get('clock_skipped_frames', 0)} frame(s); "
        f"{c.get('log_call_id_wrong', 0)} end-of-turn log event(s) carried another call's `call_id`.",
        "",
    ]


def tables(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The result tables of the sections present in ``summary``."""
    lines: list[str] = []
    if "asr" in summary:
        lines += asr_table(summary["asr"])
    if "concurrency" in summary:
        lines += concurrency_table(summary, meta)
    if "tts" in summary:
        lines += tts_table(summary["tts"])
    if "call" in summary:
        lines += call_table(summary["call"], meta)
    return lines


CRITERIA = [
    "## How each figure is measured",
    "",
    "- *ASR RTF*: decode time / audio time for one stream fed in 20 ms chunks (`feed()` per chunk, "
    "then `finish()`), the recognizer built before the clock starts; *wall* is elapsed time, *CPU* the "
    "thread's CPU time (the difference is time the machine gave to other work). Audio goes through "
    "8 kHz µ-law first. *finish()* is end of utterance → final result, part of every reply's latency. "
    "Errors are a plausibility check, not an accuracy benchmark (synthetic voices, tiny sets): WER on "
    "Piper sentences, whole-answer errors on FSDD digits, CER on espeak-ng Korean for the Korean model.",
    f"- *Concurrency*: the server's `AsrService` (PocketSphinx in worker processes, Vosk in threads), "
    f"N callers fed 20 ms frames by one clock tick on one asyncio loop (as the media clock feeds calls). "
    f"Each caller speaks about `--stream-seconds` of sentences, {PAUSE_S:g} s apart, starting at a seeded "
    "random tick within the first second; as in a call, each sentence is one recognizer stream: opened "
    f"at its first frame, fed the speech and {TAIL_S:g} s of endpointing silence, then `finish()`. A "
    f"caller *stays real time* when every final result arrives within {FINAL_MS} ms of the stream's last "
    f"frame **and** no partial result arrives more than {PARTIAL_LAG_MS} ms after the frame that produced "
    "it (the frame at which a lone recognizer fed the same audio first gave the same text; partials that "
    "match no such text are counted, not timed). N passes when every caller does. Search: up the "
    "`--levels` ladder to the first failure, then bisection (to a tenth); later runs start from the "
    "previous answer and step by a tenth until they see the boundary. Each N uses a fresh service "
    "(workers started before the clock).",
    "- *TTS*: `Synthesizer(engine)` with no prompt cache, `stream(text, 8000)`: time from the call to the "
    "first chunk in hand (*first audio*); *RTF engine* is the engine alone at its native rate on the "
    "paragraph, *RTF pipeline* the whole render (split, synthesize, resample) at 8 kHz. Load time is "
    "`load_tts_engine` in a fresh process (imports included). One warm-up, then at least 5 repetitions.",
    "- *Real call*: the voice flow of extension 300, reached through a run-time dialplan entry "
    f"({BENCH_EXTEN} → `Stasis({BENCH_APP},voice)`, added with `asterisk-sandbox cli`; asterisk_conf is "
    "untouched) so that the benchmark's server has an ARI application of its own on the shared sandbox. "
    "A fresh in-process server per run (SQLite, a fresh TTS cache: prompts are "
    "pre-rendered at start-up, every reply is synthesized), SIPp callers started at even intervals, up to "
    "`--call-concurrency` at once. Each caller waits out the greeting (its WAV length + 1.5 s), then "
    "speaks a different Piper sentence. tcpdump captures the caller's RTP both ways. *End of speech* is "
    f"the capture time of the last packet the caller sent with a level above {LOUD_DBFS:g} dBFS; *first "
    "reply audio* is the first packet received after it above that level (Piper's own lead-in silence "
    "included; the row *of any level* counts any packet). The server's own figure is the caller turn's "
    "`latency_ms` (its endpointer's end of speech → the reply's first packet sent). The breakdown comes "
    "from the server's log events (`voice.end_of_turn`: `detect_delay_ms`, `final_result_ms`) and the "
    "reply turn's `latency_ms`. A call counts when its caller turn was heard as speech.",
]


def contention(runs: list[dict[str, Any]], cpus: int) -> list[str]:
    """What other processes took while each section ran (the machine may be shared)."""
    sections = [k for k in SECTIONS if any(k in r.get("other_cores", {}) for r in runs)]
    if not sections:
        return []
    parts = [
        f"{k} {statistics.median(r['other_cores'][k] for r in runs if k in r.get('other_cores', {})):.2f}"
        for k in sections
    ]
    return [
        "- CPU taken by processes other than this benchmark and its children while each section ran "
        f"(median over runs, in cores of {cpus}): {', '.join(parts)}. The call section counts "
        "Asterisk there; the rest is other work on the machine, which the figures above compete with: "
        "with a core or more taken, the concurrency figures are a floor and the CPU ceiling a bound."
    ]


def level_table(runs: list[dict[str, Any]]) -> list[str]:
    """Every concurrency level tried, all runs: the evidence behind the largest N."""
    rows = []
    for r in runs:
        for label, c in r.get("concurrency", {}).items():
            for lv in c["levels"]:
                rows.append(
                    f"| {r['run']} | {label} | {lv['streams']} | {'pass' if lv['passed'] else 'fail'} "
                    f"({lv['streams_ok']}/{lv['streams']}) | {fmt(lv['final_ms_p50'], ' ms')} / "
                    f"{fmt(lv['final_ms_max'], ' ms')} | {fmt(lv['partial_lag_ms_p95'], ' ms')} / "
                    f"{fmt(lv['partial_lag_ms_max'], ' ms')} | {fmt(lv['tick_late_ms_max'], ' ms')} | "
                    f"{fmt(lv['other_processes_cores'], '', 2)} | {fmt(lv.get('start_s'), ' s', 1)} | "
                    f"{fmt(lv.get('workers_rss_mb'), ' MB')} |"
                )
    if not rows:
        return []
    return [
        "<details><summary>Every concurrency level tried</summary>",
        "",
        "| run | engine | N | result | final p50 / max | partial lag p95 / max | loop tick late, max "
        "| other processes (cores) | service start (decoders built ahead) | workers' memory (RSS) |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "</details>",
        "",
    ]


def markdown(data: dict[str, Any]) -> str:
    """speech.md from the whole result (meta, summary, runs)."""
    meta, summary = data["meta"], data["summary"]
    lines = [
        "# Speech benchmark",
        "",
        f"Regenerate with `{meta['command']}` (sandbox Asterisk running for the call section). "
        f"{meta['date']}, {meta['cpus']} cores ({meta['cpu_model']}), Python {meta['python']}; load average "
        f"{meta['load_avg_start']} at the start. Medians of {meta['runs']} runs, seed {meta['seed']}; "
        f"whole run {meta['elapsed_s']:.0f} s.",
        "",
        *tables(summary, meta),
        *level_table(data["runs"]),
        "## Targets",
        "",
        f"- ≥ {TARGET_STREAMS} concurrent PocketSphinx recognizers in real time on 2 cores; Vosk reported "
        "with the model at hand (Korean, the only Vosk model installable here; an English model's cost may "
        "differ).",
        f"- Piper: first audio ≤ {TARGET_TTFA_MS} ms for a short sentence.",
        f"- Reply latency in a call, endpointing silence included: p50 ≤ {TARGET_P50_MS} ms, "
        f"p95 ≤ {TARGET_P95_MS} ms.",
        "",
        *CRITERIA,
        "",
        "## Machine notes",
        "",
        *[f"- {note}" for note in meta["notes"]],
        *contention(data["runs"], meta["cpus"]),
        "",
    ]
    if "call" in summary:
        lines += ["![reply latency distribution](speech.png)", ""]
    return "\n".join(lines)


def write_outputs(out: Path, data: dict[str, Any]) -> None:
    """speech.json, speech.md and (with calls measured) speech.png in ``out``."""
    from benchmarks.speech.plot import plot

    out.mkdir(parents=True, exist_ok=True)
    (out / "speech.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    (out / "speech.md").write_text(markdown(data))
    plot(out, data)
