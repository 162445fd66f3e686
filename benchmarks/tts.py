"""TTS engines timed: load in a fresh process, time to first audio, real-time factor.

Module-level imports are the standard library's only: ``load_seconds`` times a fresh process
that imports this module first, and the engine's own imports must fall inside its timer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks.common import REPO, median

if TYPE_CHECKING:
    from ivr_server.speech.tts.base import TtsEngine
    from ivr_server.speech.tts.synthesizer import Synthesizer

SHORT = "Please enter your PIN."
PARAGRAPH = (
    "Welcome to First National Bank. To hear your account balance, press one. "
    "To report a lost or stolen card, press two."
)
TIMED = ("ttfa_short_ms", "ttfa_para_ms", "ttfa_cached_ms", "rtf_engine", "rtf_pipeline")
WARNING = 30  # logging.WARNING: engines log their choice at info, which is noise here


def quiet_logs() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(WARNING))


def time_load(name: str, model: str | None, threads: int) -> float:
    """Seconds to import the engines and load ``name`` (meant for a fresh process)."""
    quiet_logs()
    started = time.perf_counter()
    from ivr_server.speech.tts.engines import load_tts_engine

    load_tts_engine(name, model=model, threads=threads)
    return time.perf_counter() - started


def load_seconds(name: str, model: str | None, threads: int) -> float:
    """``time_load`` in a new Python process: nothing is imported or loaded yet."""
    code = f"from benchmarks.tts import time_load; print(time_load({name!r}, {model!r}, {threads!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    return float(done.stdout.strip().splitlines()[-1])


async def first_audio_ms(synth: Synthesizer, text: str, rate: int) -> float:
    """Milliseconds from ``stream()`` to the first chunk in hand."""
    started = time.perf_counter()
    stream = synth.stream(text, rate)
    await anext(stream)
    elapsed = (time.perf_counter() - started) * 1000
    async for _ in stream:  # drain (untimed): work left in the threads would slow the next run
        pass
    return elapsed


def engine_rtf(engine: TtsEngine, text: str = PARAGRAPH) -> float:
    """Engine time / audio time, at the engine's native rate."""
    started = time.perf_counter()
    samples = sum(len(c) for c in engine.synthesize(text))
    return (time.perf_counter() - started) / (samples / engine.native_rate)


async def pipeline_rtf(synth: Synthesizer, rate: int, text: str = PARAGRAPH) -> float:
    """The whole render (split, synthesize, resample to ``rate``) / audio time."""
    started = time.perf_counter()
    pcm, _ = await synth.render(text, rate)
    return (time.perf_counter() - started) / (len(pcm) / rate)


def summarize(runs: dict[str, list[float]]) -> dict[str, object]:
    """Median of each figure (ms to 0.1, factors to 1e-4) and its [min, max] as ``<key>_range``."""
    out: dict[str, object] = {}
    for key, values in runs.items():
        out[key] = median(values, 1 if key.endswith("_ms") else 4)
        out[key + "_range"] = [round(float(min(values)), 4), round(float(max(values)), 4)]
    return out


async def bench(name: str, model: str | None, rate: int, runs: int, threads: int) -> dict[str, object]:
    """One engine's figures, medians of ``runs`` after one untimed warm-up."""
    from ivr_server.speech.tts.cache import PromptCache
    from ivr_server.speech.tts.engines import load_tts_engine
    from ivr_server.speech.tts.synthesizer import Synthesizer

    engine = load_tts_engine(name, model=model, threads=threads)
    synth = Synthesizer(engine)
    cached = Synthesizer(engine, cache=PromptCache())
    try:
        await cached.render(SHORT, rate)
        await first_audio_ms(synth, SHORT, rate)  # warm-up: first inference allocates
        engine_rtf(engine)
        timed: dict[str, list[float]] = {k: [] for k in TIMED}
        for _ in range(runs):
            timed["ttfa_short_ms"].append(await first_audio_ms(synth, SHORT, rate))
            timed["ttfa_para_ms"].append(await first_audio_ms(synth, PARAGRAPH, rate))
            timed["ttfa_cached_ms"].append(await first_audio_ms(cached, SHORT, rate))
            timed["rtf_engine"].append(engine_rtf(engine))
            timed["rtf_pipeline"].append(await pipeline_rtf(synth, rate))
        loads = [load_seconds(name, model, threads) for _ in range(runs)]
    finally:
        synth.close()
        cached.close()
    return {
        "engine": name,
        "version": engine.version,
        "native_rate": engine.native_rate,
        "rate": rate,
        "threads": threads,
        "runs": runs,
        "load_s": median(loads, 3),
        **summarize(timed),
    }


async def bench_engines(
    names: list[str], coqui_model: str | None, rate: int, runs: int, threads: int
) -> list[dict[str, object]]:
    """Each engine's figures; one that cannot load is reported as ``unavailable`` with why."""
    from ivr_server.errors import EngineUnavailable

    results: list[dict[str, object]] = []
    for name in names:
        model = coqui_model if name == "coqui" else None
        try:
            results.append(await bench(name, model, rate, runs, threads))
        except EngineUnavailable as err:
            results.append({"engine": name, "unavailable": str(err)})
    return results


def as_json(results: list[dict[str, object]]) -> dict[str, object]:
    return {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "results": results}


def table(
    results: list[dict[str, Any]], rate: int, runs: int, threads: int, load_avg: float, cpus: int | None
) -> str:
    """The console table: a heading line with the conditions, one row per engine."""
    lines = [
        f"TTS at {rate} Hz, median of {runs} runs, {threads} inference thread(s), "
        f"load average {load_avg:.2f} on {cpus} CPUs",
        f"{'engine':8} {'load s':>7} {'TTFA short ms':>14} {'TTFA para ms':>13} {'TTFA cached ms':>15} "
        f"{'RTF engine':>11} {'RTF pipeline':>13}",
    ]
    for r in results:
        if "unavailable" in r:
            lines.append(f"{r['engine']:8} unavailable: {r['unavailable']}")
            continue
        lines.append(
            f"{r['engine']:8} {r['load_s']:>7.2f} {r['ttfa_short_ms']:>14.0f} {r['ttfa_para_ms']:>13.0f} "
            f"{r['ttfa_cached_ms']:>15.2f} {r['rtf_engine']:>11.3f} {r['rtf_pipeline']:>13.3f}"
        )
    return "\n".join(lines)
