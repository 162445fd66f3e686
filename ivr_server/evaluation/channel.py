"""A telephone line, simulated: what a caller's voice becomes before it reaches the server.

300-3400 Hz band-pass (a 4th-order Butterworth, the PSTN voice band), 8 kHz sampling, white
line noise at ``snr_db`` below the speech's RMS, then G.711 mu-law encoding and decoding (the
codec's quantization). Deterministic for a given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from ivr_server.media.g711 import Pcm, ulaw_decode, ulaw_encode
from ivr_server.media.resample import resample

RATE = 8000


@dataclass(frozen=True)
class Line:
    low_hz: float = 300.0
    high_hz: float = 3400.0
    snr_db: float | None = 30.0  # None: no noise
    seed: int = 0


def telephone(pcm: Pcm, rate: int, line: Line = Line()) -> Pcm:
    """``pcm`` at ``rate`` as an 8 kHz mu-law call leg delivers it (16-bit PCM again)."""
    x = resample(pcm, rate, RATE).astype(np.float64) if rate != RATE else pcm.astype(np.float64)
    sos = butter(4, [line.low_hz, line.high_hz], btype="band", fs=RATE, output="sos")
    x = sosfilt(sos, x)
    if line.snr_db is not None and len(x):
        rms = float(np.sqrt(np.mean(x**2)))
        noise = np.random.default_rng(line.seed).normal(0.0, rms / 10 ** (line.snr_db / 20), len(x))
        x = x + noise
    clipped = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(clipped))
