"""The speech benchmark's TTS section (benchmarks/speech/tts.py) on the real espeak-ng engine:
first audio, the figures of one engine, and an engine that cannot load."""

from __future__ import annotations

from benchmarks.speech.tts import MIN_REPS, TTS_SHORT, bench_tts_engine, first_audio_ms
from ivr_server.speech.tts.engines import load_tts_engine
from ivr_server.speech.tts.synthesizer import Synthesizer


async def test_first_audio_comes_before_the_whole_text_is_spoken() -> None:
    """stream(text, 8000): the first chunk is in hand in less time than the whole sentence
    lasts; the audio drained is the sentence's length."""
    synth = Synthesizer(load_tts_engine("espeak"))
    try:
        ms, audio_s = await first_audio_ms(synth, TTS_SHORT)
    finally:
        synth.close()
    assert 1.0 < audio_s < 4.0
    assert 0 < ms < audio_s * 1000


async def test_an_engine_gets_every_figure_of_the_tts_table() -> None:
    """espeak-ng: its version, load time, first audio for both texts, both real-time factors
    (faster than real time), at least MIN_REPS repetitions even when fewer are asked for."""
    result = await bench_tts_engine("espeak", None, reps=1)
    assert result["version"].startswith("espeak-ng")
    assert result["reps"] == MIN_REPS
    assert result["load_s"] > 0
    assert 0 < result["ttfa_short_ms"] < 1000 and 0 < result["ttfa_paragraph_ms"] < 1000
    assert 0 < result["rtf_engine"] < 1 and 0 < result["rtf_pipeline"] < 1


async def test_an_engine_that_cannot_load_says_why() -> None:
    """Coqui without a model directory is reported unavailable with the reason, not measured."""
    result = await bench_tts_engine("coqui", None, reps=5)
    assert list(result) == ["unavailable"]
    assert "needs a model" in result["unavailable"]
