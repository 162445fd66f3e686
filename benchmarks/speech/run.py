"""The speech benchmark's runs: every selected section once per run, in the order given, with a
seeded random source per run, and what other processes took meanwhile; then the meta data that
says which machine and command produced the figures."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_model
from benchmarks.speech import log
from benchmarks.speech.asr import run_asr
from benchmarks.speech.audio import LOUD_DBFS, Voices
from benchmarks.speech.call import LogTap, quiet_logging, run_call_section
from benchmarks.speech.concurrency import FINAL_MS, PARTIAL_LAG_MS, Load, run_concurrency
from benchmarks.speech.machine import cpu_counters, machine_notes, other_cores
from benchmarks.speech.report import combine, command_of
from benchmarks.speech.tts import run_tts
from ivr_server.config import CONFIG_FILE_ENV, Settings, env_name


def clear_server_environment() -> None:
    """The server in this process reads its settings from the environment: the developer's must
    not leak in."""
    for key in {env_name(f) for f in Settings.model_fields} | {CONFIG_FILE_ENV}:
        os.environ.pop(key, None)
        os.environ.pop(key.lower(), None)


async def measure(args: argparse.Namespace, sections: list[str]) -> dict[str, Any]:
    """``args.runs`` runs of ``sections`` (in that order): {"meta", "summary", "runs"}."""
    clear_server_environment()
    tap = LogTap()
    quiet_logging(tap)
    started = time.monotonic()
    load_start = round(os.getloadavg()[0], 2)
    runs: list[dict[str, Any]] = []
    previous: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-speech-") as tmp:
        voices = Voices(Path(tmp))
        for i in range(args.runs):
            rng = random.Random(args.seed * 1000 + i)
            result: dict[str, Any] = {
                "run": i + 1,
                "load_avg": round(os.getloadavg()[0], 2),
                "other_cores": {},
            }
            for section in sections:
                t = time.monotonic()
                cpu = cpu_counters()
                log(f"run {i + 1}/{args.runs}: {section}")
                if section == "asr":
                    result["asr"] = await asyncio.to_thread(run_asr, voices, args.seed)
                elif section == "concurrency":
                    labels = args.concurrency_engines.split(",")
                    levels = tuple(int(x) for x in args.levels.split(","))
                    load = Load(levels, args.stream_seconds, args.asr_workers, args.accurate_streams)
                    result["concurrency"] = await run_concurrency(voices, load, labels, rng, previous)
                elif section == "tts":
                    result["tts"] = await run_tts(args.coqui_model, args.tts_reps)
                else:
                    result["call"] = await run_call_section(
                        voices, rng, args.calls, args.call_concurrency, args.asr_workers, tap
                    )
                result["other_cores"][section] = other_cores(cpu)
                log(
                    f"run {i + 1}/{args.runs}: {section} took {time.monotonic() - t:.0f} s; other processes "
                    f"used {result['other_cores'][section]:.2f} cores meanwhile"
                )
            runs.append(result)
    meta = {
        "command": command_of(args),
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "runs": args.runs,
        "seed": args.seed,
        "load_avg_start": load_start,
        "elapsed_s": round(time.monotonic() - started, 1),
        "asr_workers": args.asr_workers,
        "accurate_streams": args.accurate_streams,
        "call_concurrency": args.call_concurrency,
        "vad_end_silence_ms": Settings.model_fields["vad_end_silence_ms"].default,
        "criteria": {"final_ms": FINAL_MS, "partial_lag_ms": PARTIAL_LAG_MS, "loud_dbfs": LOUD_DBFS},
        "notes": machine_notes(args.asr_workers, "call" in args.only),
    }
    return {"meta": meta, "summary": combine(runs, args.calls), "runs": runs}
