"""scripts/bench-tts's measuring code (benchmarks.tts) on the real espeak-ng engine."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from benchmarks.common import REPO
from benchmarks.tts import (
    SHORT,
    TIMED,
    bench_engines,
    engine_rtf,
    first_audio_ms,
    pipeline_rtf,
    summarize,
    table,
)
from ivr_server.speech.tts.cache import PromptCache
from ivr_server.speech.tts.engines import load_tts_engine
from ivr_server.speech.tts.synthesizer import Synthesizer


@pytest.fixture
def espeak_synths() -> Iterator[tuple[Synthesizer, Synthesizer]]:
    """espeak-ng behind two synthesizers: without a cache, and with a memory prompt cache."""
    engine = load_tts_engine("espeak")
    plain, cached = Synthesizer(engine), Synthesizer(engine, cache=PromptCache())
    yield plain, cached
    plain.close()
    cached.close()


def test_importing_the_module_loads_no_engine_code() -> None:
    """The fresh process that times a load imports benchmarks.tts first: that import must leave
    numpy and ivr_server unloaded, or their import time would fall outside the timer."""
    code = (
        "import sys, benchmarks.tts; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'ivr_server', 'structlog')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


async def test_first_audio_comes_sooner_from_the_prompt_cache(
    espeak_synths: tuple[Synthesizer, Synthesizer],
) -> None:
    """Time to first audio is positive; the short sentence, once in the memory cache, arrives
    faster than when espeak-ng synthesizes it."""
    plain, cached = espeak_synths
    await cached.render(SHORT, 8000)
    synthesized = min([await first_audio_ms(plain, SHORT, 8000) for _ in range(3)])
    from_cache = min([await first_audio_ms(cached, SHORT, 8000) for _ in range(3)])
    assert 0 < from_cache < synthesized


async def test_real_time_factors_of_espeak_are_well_below_one(
    espeak_synths: tuple[Synthesizer, Synthesizer],
) -> None:
    """espeak-ng speaks far faster than real time, at its native rate and through the whole
    pipeline to 8 kHz: both factors are positive and under 1."""
    plain, _ = espeak_synths
    assert 0 < engine_rtf(plain.engine) < 1
    assert 0 < await pipeline_rtf(plain, 8000) < 1


def test_summarize_gives_medians_and_ranges() -> None:
    """Medians round to 0.1 for _ms figures and to 1e-4 for factors; each gets its [min, max]."""
    out = summarize({"ttfa_short_ms": [30.0, 10.04, 20.06], "rtf_engine": [0.2, 0.123456, 0.1]})
    assert out == {
        "ttfa_short_ms": 20.1,
        "ttfa_short_ms_range": [10.04, 30.0],
        "rtf_engine": 0.1235,
        "rtf_engine_range": [0.1, 0.2],
    }


async def test_bench_engines_one_run_of_espeak_and_an_unavailable_coqui() -> None:
    """One run gives every figure for espeak-ng (load time from a fresh process included);
    coqui without a model is listed as unavailable with the reason, not raised."""
    results = await bench_engines(["espeak", "coqui"], None, 8000, 1, 1)
    espeak, coqui = results
    assert espeak["engine"] == "espeak" and espeak["rate"] == 8000 and espeak["runs"] == 1
    assert isinstance(espeak["load_s"], float) and 0 < espeak["load_s"] < 60
    for key in TIMED:
        value = espeak[key]
        assert isinstance(value, float) and value > 0
        assert espeak[key + "_range"] == [pytest.approx(value, abs=0.1)] * 2  # one run: min = max
    assert coqui["engine"] == "coqui" and "needs a model" in str(coqui["unavailable"])


def test_table_has_a_row_per_engine() -> None:
    """The console table: conditions on top, figures formatted per column, and an engine that
    did not load shown with its reason."""
    results = [
        {
            "engine": "espeak",
            "load_s": 0.4567,
            "ttfa_short_ms": 12.3,
            "ttfa_para_ms": 45.6,
            "ttfa_cached_ms": 0.123,
            "rtf_engine": 0.0123,
            "rtf_pipeline": 0.0234,
        },
        {"engine": "coqui", "unavailable": "no model"},
    ]
    lines = table(results, 8000, 5, 1, 1.5, 2).splitlines()
    assert lines[0] == "TTS at 8000 Hz, median of 5 runs, 1 inference thread(s), load average 1.50 on 2 CPUs"
    assert lines[1].split() == [
        "engine", "load", "s", "TTFA", "short", "ms", "TTFA", "para", "ms", "TTFA", "cached", "ms",
        "RTF", "engine", "RTF", "pipeline",
    ]  # fmt: skip
    assert lines[2].split() == ["espeak", "0.46", "12", "46", "0.12", "0.012", "0.023"]
    assert lines[3] == "coqui    unavailable: no model"
