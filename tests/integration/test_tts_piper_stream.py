"""Piper's graph cut at the decoder: sliced decoding is exact, early, and survives a failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from structlog.testing import capture_logs

from ivr_server.media.audio import frame_dbfs
from ivr_server.media.g711 import Pcm
from ivr_server.speech.tts import piper_engine
from ivr_server.speech.tts.engines import load_fallback, load_tts_engine
from ivr_server.speech.tts.piper_engine import PiperEngine, default_voice
from ivr_server.speech.tts.piper_stream import FIRST_FRAMES, SplitVoice
from ivr_server.speech.tts.synthesizer import Synthesizer

LONG = (
    "Thank you for calling First National Bank, where your savings, your checking and your "
    "credit cards are looked after around the clock by people who care."
)


def whole_graph_audio(engine: PiperEngine, text: str) -> np.ndarray:
    """The reference: the unsplit voice file run in one piece, as Piper itself runs it."""
    session = onnxruntime.InferenceSession(str(default_voice()), providers=["CPUExecutionProvider"])
    voice = engine._loaded.voice
    out = [
        session.run(None, engine._inputs(voice, voice.phonemes_to_ids(p)))[0].reshape(-1)
        for p in voice.phonemize(text)
        if p
    ]
    return np.concatenate(out)


def test_sliced_decoding_reproduces_the_whole_graph() -> None:
    engine = load_tts_engine("piper")
    assert isinstance(engine, PiperEngine) and engine._loaded.split is not None
    slices = list(engine._raw(LONG, engine._loaded))
    reference = whole_graph_audio(engine, LONG)
    joined = np.concatenate(slices)
    assert len(slices) >= 3 and joined.shape == reference.shape
    error = float(np.abs(joined - reference).max())
    assert error < 1e-3 * float(np.abs(reference).max()), error


def test_the_first_slice_is_short_whatever_the_sentence_length() -> None:
    engine = load_tts_engine("piper")
    first = next(iter(engine.synthesize(LONG)))
    whole = sum(len(c) for c in engine.synthesize(LONG))
    assert len(first) == FIRST_FRAMES * 256 and whole > 8 * len(first)
    assert first.dtype == np.int16 and 0 < np.abs(first).max() <= 32767


def test_loudness_is_one_gain_per_voice_and_does_not_clip() -> None:
    engine = load_tts_engine("piper")
    for text in ("Yes.", "Goodbye.", LONG, "Your balance is twelve dollars."):
        pcm = np.concatenate(list(engine.synthesize(text)))
        peak = int(np.abs(pcm).max())
        assert 0.3 * 32767 < peak < 32767, (text, peak)  # audible, never hitting the rail


def test_a_graph_that_is_not_a_piper_export_is_refused_by_name(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "odd.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="dec/conv_pre/Conv"):
        SplitVoice.load(path, onnxruntime.SessionOptions())


def test_a_voice_that_does_not_split_still_speaks_and_the_log_says_why(tmp_path: Path) -> None:
    """Renamed decoder nodes (another exporter): the voice loads whole and logs tts.piper_unsplit."""
    model = onnx.load(str(default_voice()))
    for node in model.graph.node:
        node.name = node.name.replace("/dec/", "/decoder/")
    path = tmp_path / "renamed.onnx"
    onnx.save(model, str(path))
    config = json.loads(Path(f"{default_voice()}.json").read_text())
    Path(f"{path}.json").write_text(json.dumps(config))
    with capture_logs() as logs:
        engine = PiperEngine(path)
    assert engine._loaded.split is None and engine.version.endswith(",whole")
    assert [e["event"] for e in logs if e["event"] == "tts.piper_unsplit"] == ["tts.piper_unsplit"]
    pcm = np.concatenate(list(engine.synthesize("Your balance is twelve dollars.")))
    assert frame_dbfs(pcm) > -30


def test_a_voice_loads_from_what_the_last_start_kept_and_speaks_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cut graph and the gain kept in the cache: the next load (a new process: the voice is
    not in memory) skips deriving them, and the voice is the same voice; a torn entry is not
    trusted but derived again."""
    text = "Your balance is twelve dollars."
    monkeypatch.setattr(piper_engine, "_voices", {})
    first = PiperEngine(cache_dir=tmp_path)
    heard = np.concatenate(list(first.synthesize(text)))
    entry = next((tmp_path / "piper").iterdir())
    assert {p.name for p in entry.iterdir()} == {"encoder.onnx", "decoder.onnx", "voice.json"}

    def no_cutting(model: Path) -> None:
        raise AssertionError("derived again although the cache holds it")

    monkeypatch.setattr(piper_engine, "_voices", {})
    monkeypatch.setattr(piper_engine, "cut", no_cutting)
    again = PiperEngine(cache_dir=tmp_path)
    assert again.version == first.version and again._loaded.split is not None
    assert np.array_equal(np.concatenate(list(again.synthesize(text))), heard)

    monkeypatch.undo()
    monkeypatch.setattr(piper_engine, "_voices", {})
    torn = entry / "decoder.onnx"
    torn.write_bytes(torn.read_bytes()[:1000])
    with capture_logs() as logs:
        mended = PiperEngine(cache_dir=tmp_path)
    assert [e for e in logs if e["event"] == "tts.piper_cache_unreadable"]
    assert mended.version == first.version
    assert np.array_equal(np.concatenate(list(mended.synthesize(text))), heard)
    assert torn.stat().st_size > 1000  # the torn entry replaced by a whole one


class FailsAfterHead:
    """A real Piper voice whose runtime dies after the first slice of a sentence."""

    def __init__(self, inner: PiperEngine) -> None:
        self.inner = inner
        self.name, self.voice, self.version = "failing-piper", inner.voice, inner.version
        self.native_rate, self.languages = inner.native_rate, inner.languages

    def synthesize(self, text: str) -> Iterator[Pcm]:
        chunks = self.inner.synthesize(text)
        yield next(chunks)
        raise RuntimeError("onnxruntime: session crashed")


async def test_an_engine_dying_after_the_head_hands_the_whole_sentence_to_the_fallback() -> None:
    primary = FailsAfterHead(load_tts_engine("piper"))  # type: ignore[arg-type]
    synth = Synthesizer(primary, fallback=load_fallback(primary))  # type: ignore[arg-type]
    try:
        with capture_logs() as logs:
            chunks = [c async for c in synth.stream(LONG, 8000)]
    finally:
        synth.close()
    engines = [c.engine for c in chunks]
    assert engines[0] == "failing-piper" and set(engines[1:]) == {"espeak"}
    head, again = chunks[0], chunks[1]  # the first piece, spoken whole by espeak after its head
    assert not head.final and again.final and again.sentence == head.sentence
    assert frame_dbfs(again.pcm) > -35 and again.duration_s > head.duration_s
    # The next piece was already in flight on the dying engine, so it falls back on its own too.
    fallback = [e for e in logs if e["event"] == "tts.fallback"]
    assert [e.get("after_head", False) for e in fallback].count(True) == 1
    assert all("session crashed" in e["error"] for e in fallback)
