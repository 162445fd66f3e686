"""Band-limited resampling (windowed sinc): whole buffers (prompts, converted once) and streams
(20 ms frames to a recognizer), both with the same kernel and the same output."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ivr_server.media.g711 import Pcm

_HALF_TAPS = 16  # kernel half-width in input samples at full bandwidth
_BETA = 8.0  # Kaiser window shape: about 80 dB stop-band
_CHUNK = 4096  # output samples computed per step, bounding memory
_MAX_PHASES = 4096  # kernel rows precomputed per rate pair (22050 -> 8000 needs 160)


def resample(pcm: Pcm, src_rate: int, dst_rate: int) -> Pcm:
    """Resample a whole buffer of 16-bit PCM from ``src_rate`` to ``dst_rate`` Hz: the stream
    resampler fed once, so both give the same samples."""
    stream = StreamResampler(src_rate, dst_rate)
    return np.concatenate([stream.process(pcm), stream.flush()])


class StreamResampler:
    """Chunk-by-chunk resampling: any split of the input gives the same output."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._step = src_rate / dst_rate
        self._cutoff = min(1.0, dst_rate / src_rate) * 0.95
        self._width = int(np.ceil(_HALF_TAPS / self._cutoff))
        self._offsets = np.arange(-self._width + 1, self._width + 1)
        # Output n sits at input position n * src / dst: its fractional part takes one of
        # dst / gcd values, so the kernel rows are computed once, not per sample (np.i0 is slow).
        g = math.gcd(src_rate, dst_rate)
        self._phases = dst_rate // g
        self._src_g = src_rate // g
        self._table = (
            _kernel(
                np.arange(self._phases)[:, None] / self._phases - self._offsets[None, :],
                self._cutoff,
                self._width,
            )
            if self._phases <= _MAX_PHASES
            else None
        )
        self._buf = np.zeros(self._width, dtype=np.float64)  # history; starts as zero padding
        self._buf_start = -self._width  # input index of _buf[0]
        self._received = 0  # input samples so far
        self._produced = 0  # output samples so far

    def process(self, pcm: Pcm) -> Pcm:
        if self.src_rate == self.dst_rate:
            self._received += len(pcm)
            return np.array(pcm, dtype=np.int16)
        self._buf = np.concatenate([self._buf, np.asarray(pcm, dtype=np.float64)])
        self._received += len(pcm)
        # Output n needs input up to floor(n * step) + width.
        ready = int(np.floor((self._received - 1 - self._width) / self._step)) + 1
        return self._emit(min(ready, (self._received * self.dst_rate) // self.src_rate))

    def flush(self) -> Pcm:
        """The last samples, as if the stream were followed by silence."""
        if self.src_rate == self.dst_rate:
            return np.zeros(0, dtype=np.int16)
        self._buf = np.concatenate([self._buf, np.zeros(self._width + 2)])
        return self._emit((self._received * self.dst_rate) // self.src_rate)

    def _emit(self, end: int) -> Pcm:
        if end <= self._produced:
            return np.zeros(0, dtype=np.int16)
        out = np.empty(end - self._produced, dtype=np.float64)
        for first in range(self._produced, end, _CHUNK):  # bounded memory for long buffers
            n = np.arange(first, min(first + _CHUNK, end), dtype=np.int64)
            position = n * self._src_g  # in units of 1/phases input samples: exact integers
            idx = (position // self._phases)[:, None] + self._offsets[None, :]
            values = self._buf[idx - self._buf_start]
            if self._table is not None:
                kernel = self._table[position % self._phases]
            else:
                t = position / self._phases
                kernel = _kernel(t[:, None] - idx, self._cutoff, self._width)
            out[first - self._produced : first - self._produced + len(n)] = (values * kernel).sum(axis=1)
        self._produced = end
        keep_from = int(np.floor(end * self._step)) - self._width + 1  # first input still needed
        drop = max(0, keep_from - self._buf_start)
        self._buf = self._buf[drop:]
        self._buf_start += drop
        result: Pcm = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result


def _kernel(d: npt.NDArray[np.float64], cutoff: float, width: int) -> npt.NDArray[np.float64]:
    inside = np.clip(1.0 - (d / width) ** 2, 0.0, None)
    window = np.i0(_BETA * np.sqrt(inside)) / np.i0(_BETA)
    return cutoff * np.sinc(cutoff * d) * window
