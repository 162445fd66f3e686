"""Coqui TTS (the coqui-tts fork, an optional extra): any Coqui model, from a directory
(``config.json`` plus a checkpoint) or a checkpoint file with ``config.json`` beside it, or by a
Coqui model name (``tts_models/en/ljspeech/vits``), which Coqui downloads into its own cache
(~/.local/share/tts) on first use: that needs network access at start-up; a directory does not.

``TTS`` and ``torch`` are imported only when this engine is asked for: they take seconds to
import and about 1.5 GB of disk. Runs on the CPU. torch's thread count is process-wide, so it
is set once here (default 1: the box also runs Piper and ASR); calls into the model are
serialised, as Coqui models keep state between steps. VITS models synthesize without noise,
so a text always gives the same audio.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ivr_server.errors import EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.speech.tts.base import fingerprint, language_family

INSTALL_HINT = "pip install coqui-tts torch==2.13.0 (the CPU wheel; see README)"
_CHECKPOINT_NAMES = ("model.pth", "best_model.pth", "model_file.pth", "model.pth.tar", "checkpoint.pth")


class CoquiEngine:
    name = "coqui"

    def __init__(self, model: str, speaker: str | None = None, threads: int = 1) -> None:
        try:
            import torch
            from TTS.utils.synthesizer import Synthesizer
        except (
            ImportError,
            OSError,
        ) as err:  # ImportError: torch/torchaudio missing; OSError: a CUDA-only build
            reason = " ".join(str(err).split()) or type(err).__name__
            raise EngineUnavailable(f"Coqui TTS cannot be imported ({reason}): {INSTALL_HINT}") from err
        torch.set_num_threads(threads)
        path = Path(model).expanduser()
        try:
            if path.exists():
                checkpoint, config = _model_files(path)
                synth: Any = Synthesizer(tts_checkpoint=str(checkpoint), tts_config_path=str(config))
                identity = f"{path.name}@{fingerprint(checkpoint)}{fingerprint(config)[:4]}"
            else:
                from TTS.api import TTS

                synth = TTS(model_name=model, progress_bar=False).synthesizer
                identity = model
        except EngineUnavailable:
            raise
        except Exception as err:  # Coqui raises anything from KeyError to RuntimeError on a bad model
            raise EngineUnavailable(
                f"Coqui model {model!r} does not load: {type(err).__name__}: {err}"
            ) from err
        self._synth = synth
        tts_model = synth.tts_model
        for knob in ("inference_noise_scale", "inference_noise_scale_dp"):  # deterministic VITS
            if hasattr(tts_model, knob):
                setattr(tts_model, knob, 0.0)
        speakers = list(getattr(getattr(tts_model, "speaker_manager", None), "speaker_names", None) or [])
        if speaker is not None and speaker not in speakers:
            known = ", ".join(speakers) or "none: the model has one speaker"
            raise EngineUnavailable(f"Coqui model {model!r} has no speaker {speaker!r} (speakers: {known})")
        self._speaker = speaker
        self._lock = threading.Lock()
        self._torch: Any = torch
        self.voice = Path(model).name + (f"#{speaker}" if speaker else "")
        self.native_rate = int(synth.output_sample_rate)
        language = synth.tts_config.get("phoneme_language") or "en"
        self.languages = frozenset({language_family(str(language))})
        self.version = (
            f"coqui-tts {metadata.version('coqui-tts')}/torch {torch.__version__}/{identity}/noise=0"
        )

    def synthesize(self, text: str) -> Iterator[Pcm]:
        with self._lock, self._torch.inference_mode():
            wav = self._synth.tts(text, speaker_name=self._speaker, split_sentences=False)
        samples = np.nan_to_num(np.asarray(wav, dtype=np.float32).reshape(-1))
        pcm: Pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        yield pcm


def _model_files(path: Path) -> tuple[Path, Path]:
    """(checkpoint, config.json) of a model directory or checkpoint file."""
    directory = path if path.is_dir() else path.parent
    config = directory / "config.json"
    if not config.is_file():
        raise EngineUnavailable(f"Coqui model {path}: no config.json in {directory}")
    if path.is_file():
        return path, config
    for name in _CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name, config
    found = sorted(directory.glob("*.pth"))
    if len(found) == 1:
        return found[0], config
    raise EngineUnavailable(
        f"Coqui model directory {directory}: need one checkpoint ({', '.join(_CHECKPOINT_NAMES)} or a "
        f"single *.pth), found {', '.join(p.name for p in found) or 'none'}"
    )
