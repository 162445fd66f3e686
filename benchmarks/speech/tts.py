"""TTS speed per engine at 8 kHz with no cache: load time (a fresh process), time to first audio
of a short sentence and a paragraph through Synthesizer.stream, real-time factor."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from benchmarks.common import REPO, median
from benchmarks.speech.audio import RATE
from ivr_server.errors import EngineUnavailable
from ivr_server.speech.tts.synthesizer import Synthesizer

TTS_SHORT = "Your balance is twelve dollars."
TTS_PARAGRAPH = (
    "Thank you for calling First National Bank. Your balance is twelve dollars and forty cents. "
    "To hear your recent payments, say payments, or press one."
)
MIN_REPS = 5
LOAD_SNIPPET = """
import sys, time, logging, structlog
sys.path.insert(0, {repo!r})
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
t = time.perf_counter()
from ivr_server.speech.tts.engines import load_tts_engine
load_tts_engine({name!r}, model={model!r})
print(time.perf_counter() - t)
"""


def tts_load_s(name: str, model: str | None) -> float:
    """Seconds to import and load the engine in a fresh Python (what a server start pays)."""
    code = LOAD_SNIPPET.format(repo=str(REPO), name=name, model=model)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return float(done.stdout.strip().splitlines()[-1])


async def first_audio_ms(synth: Synthesizer, text: str) -> tuple[float, float]:
    """(ms to the first chunk, audio s of the whole text) through stream(text, 8000)."""
    started = time.perf_counter()
    stream = synth.stream(text, RATE)
    first = await anext(stream)
    elapsed = (time.perf_counter() - started) * 1000
    samples = len(first.pcm)
    async for chunk in stream:  # drain: work left in the threads would slow the next run
        samples += len(chunk.pcm)
    return elapsed, samples / RATE


async def bench_tts_engine(name: str, model: str | None, reps: int) -> dict[str, Any]:
    """One engine's figures: medians over ``reps`` repetitions after a warm-up (at least MIN_REPS),
    or why it is unavailable."""
    from ivr_server.speech.tts.engines import load_tts_engine

    reps = max(MIN_REPS, reps)
    try:
        engine = load_tts_engine(name, model=model)
    except EngineUnavailable as err:
        return {"unavailable": str(err)}
    synth = Synthesizer(engine)  # no PromptCache: every repetition synthesizes
    try:
        await first_audio_ms(synth, TTS_SHORT)  # warm-up
        short, para, rtf_engine, rtf_pipeline = [], [], [], []
        for _ in range(reps):
            short.append((await first_audio_ms(synth, TTS_SHORT))[0])
            para.append((await first_audio_ms(synth, TTS_PARAGRAPH))[0])
            started = time.perf_counter()
            samples = sum(len(c) for c in engine.synthesize(TTS_PARAGRAPH))
            rtf_engine.append((time.perf_counter() - started) / (samples / engine.native_rate))
            started = time.perf_counter()
            pcm, _ = await synth.render(TTS_PARAGRAPH, RATE)
            rtf_pipeline.append((time.perf_counter() - started) / (len(pcm) / RATE))
    finally:
        synth.close()
    return {
        "version": engine.version,
        "load_s": round(tts_load_s(name, model), 3),
        "ttfa_short_ms": median(short, 1),
        "ttfa_paragraph_ms": median(para, 1),
        "rtf_engine": median(rtf_engine, 4),
        "rtf_pipeline": median(rtf_pipeline, 4),
        "reps": reps,
    }


async def run_tts(coqui_model: str | None, reps: int) -> dict[str, Any]:
    """Piper and espeak-ng, and Coqui when given a model directory."""
    names = ["piper", "espeak"] + (["coqui"] if coqui_model else [])
    return {
        name: await bench_tts_engine(name, coqui_model if name == "coqui" else None, reps) for name in names
    }
