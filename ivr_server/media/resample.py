"""Band-limited resampling (windowed sinc) for prompts and other whole-buffer audio.

Not for the per-frame path: prompts are converted once, when loaded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ivr_server.media.g711 import Pcm

_HALF_TAPS = 16  # kernel half-width in input samples at full bandwidth
_BETA = 8.0  # Kaiser window shape: about 80 dB stop-band
_CHUNK = 4096  # output samples computed per step, bounding memory


def resample(pcm: Pcm, src_rate: int, dst_rate: int) -> Pcm:
    """Resample 16-bit PCM from ``src_rate`` to ``dst_rate`` Hz."""
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    if src_rate == dst_rate or len(pcm) == 0:
        return np.array(pcm, dtype=np.int16)
    step = src_rate / dst_rate
    cutoff = min(1.0, dst_rate / src_rate) * 0.95  # fraction of the input Nyquist kept
    width = int(np.ceil(_HALF_TAPS / cutoff))
    x = np.pad(np.asarray(pcm, dtype=np.float64), (width, width + 1))
    n_out = (len(pcm) * dst_rate) // src_rate
    offsets = np.arange(-width + 1, width + 1)
    out = np.empty(n_out, dtype=np.float64)
    for start in range(0, n_out, _CHUNK):
        t = np.arange(start, min(start + _CHUNK, n_out)) * step
        idx = np.floor(t).astype(np.int64)[:, None] + offsets[None, :]
        d = t[:, None] - idx
        out[start : start + len(t)] = (x[idx + width] * _kernel(d, cutoff, width)).sum(axis=1)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def _kernel(d: npt.NDArray[np.float64], cutoff: float, width: int) -> npt.NDArray[np.float64]:
    inside = np.clip(1.0 - (d / width) ** 2, 0.0, None)
    window = np.i0(_BETA * np.sqrt(inside)) / np.i0(_BETA)
    return cutoff * np.sinc(cutoff * d) * window
