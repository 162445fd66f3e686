"""Test streams for the VAD benchmark: an FSDD recording padded with its own line noise, then
white, pink, babble or mains-hum noise at a given SNR (or overdriven into clipping), and the
reference speech labels taken from the clean recording alone."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm, ulaw_decode, ulaw_encode
from ivr_server.media.resample import resample
from ivr_server.speech.vad.base import FRAME_MS
from tests.support.data import FSDD

Signal = npt.NDArray[np.float64]

CONDITIONS: list[tuple[str, int | None]] = [
    ("clean", None),
    ("white", 20), ("white", 10), ("white", 5),
    ("pink", 20), ("pink", 10), ("pink", 5),
    ("babble", 20), ("babble", 10), ("babble", 5),
    ("hum", 10), ("hum", 0),
    ("clipped", None),
]  # fmt: skip
NOISE_ONLY = ["line", "white", "pink", "babble", "hum"]
NOISE_ONLY_DBFS = -36.0  # 10 dB under a typical telephone speech level (-26 dBFS active)
NOISE_ONLY_S = 20.0
LINE_DBFS = -65.0  # the "line" noise-only stream: a quiet but not silent telephone line


@dataclass
class Stream:
    pcm: Pcm
    onset_ms: int
    offset_ms: int
    ref: npt.NDArray[np.bool_]  # speech or not, per 20 ms frame


def pool(directory: Path = FSDD) -> list[Path]:
    """The FSDD recordings, in a fixed order (the runs draw from it by seed)."""
    return sorted(directory.glob("*.wav"))


@functools.cache
def load(path: Path, rate: int = 8000) -> Pcm:
    """An FSDD recording at ``rate`` (upsampled once, then cached)."""
    if rate != 8000:
        return resample(load(path), 8000, rate)
    got, pcm = read_wav(path)
    if got != 8000:
        raise ValueError(f"{path}: {got} Hz, FSDD recordings are 8000 Hz")
    return pcm


def reference(pcm: Pcm) -> tuple[int, int, float, float]:
    """(onset ms, offset ms, active speech rms, background rms) from a clean 8 kHz recording:
    speech runs from the first to the last 10 ms frame at or above max(peak - 30 dB,
    background + 6 dB)."""
    n = 80  # 10 ms
    x = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    ms = np.maximum((x**2).mean(axis=1), 1e-3)
    db = 10 * np.log10(ms)
    thr = max(db.max() - 30.0, db.min() + 6.0)
    above = np.flatnonzero(db >= thr)
    first, last = int(above[0]), int(above[-1]) + 1
    return first * 10, last * 10, float(np.sqrt(ms[first:last].mean())), float(np.sqrt(ms.min()))


def pink(rng: np.random.Generator, n: int, rate: int) -> Signal:
    """Power falling 3 dB per octave (1/f), flat below 20 Hz so DC does not blow up."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec *= 1 / np.sqrt(np.maximum(f, 20.0))
    return np.fft.irfft(spec, n)


def babble(rng: np.random.Generator, n: int, rate: int, recordings: list[Path], exclude: Path) -> Signal:
    """Six talkers, each a chain of random FSDD recordings with short gaps, at equal level."""
    out = np.zeros(n)
    others = [p for p in recordings if p != exclude]
    for _ in range(6):
        track: list[Signal] = [np.zeros(int(rng.integers(0, rate // 2)))]
        while sum(len(t) for t in track) < n:
            x = load(others[int(rng.integers(len(others)))], rate).astype(np.float64)
            track += [x / (np.sqrt((x**2).mean()) + 1e-9), np.zeros(int(rng.integers(0, rate // 10)))]
        out += np.concatenate(track)[:n]
    return out


def hum(rng: np.random.Generator, n: int, rate: int) -> Signal:
    """Mains hum: 50 or 60 Hz with its 2nd and 3rd harmonics at -6 and -12 dB, random phases."""
    f0 = float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / rate
    out = np.zeros(n)
    for k, a in ((1, 1.0), (2, 0.5), (3, 0.25)):
        out += a * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi))
    return out


def generated(rng: np.random.Generator, kind: str, n: int, rate: int) -> Signal:
    """``n`` samples of white, pink or hum noise at no particular level."""
    if kind == "white":
        white: Signal = rng.normal(size=n)
        return white
    if kind == "pink":
        return pink(rng, n, rate)
    if kind == "hum":
        return hum(rng, n, rate)
    raise ValueError(f"no generated noise called {kind!r}")


def scaled(noise: Signal, rms: float) -> Signal:
    gain = rms / (float(np.sqrt((noise**2).mean())) + 1e-12)
    return noise * gain


def to_call(x: Signal, rate: int) -> Pcm:
    """16-bit samples as a call delivers them: through G.711 µ-law at 8 kHz, linear at 16 kHz."""
    pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm)) if rate == 8000 else pcm


def build(
    rng: np.random.Generator, path: Path, recordings: list[Path], cond: str, snr: float | None, rate: int
) -> Stream:
    """One test stream: ``path`` after 1-2 s and before 2 s of its own background, with ``cond``
    noise at ``snr`` dB under the speech's active level, labelled per 20 ms frame."""
    onset, offset, speech_rms, floor_rms = reference(load(path))
    speech = load(path, rate)
    per_ms = rate // 1000
    lead = int(rng.uniform(1000, 2000)) // 10 * 10
    total = (lead + len(speech) // per_ms + 2000) // FRAME_MS * FRAME_MS
    n = total * per_ms
    x = rng.normal(0, max(floor_rms, 1.0), n)  # the line's own background, level-matched
    x[lead * per_ms : lead * per_ms + len(speech)] = speech
    noise_rms = speech_rms / 10 ** ((snr or 0) / 20)
    if cond == "babble":
        x += scaled(babble(rng, n, rate, recordings, path), noise_rms)
    elif cond in ("white", "pink", "hum"):
        x += scaled(generated(rng, cond, n, rate), noise_rms)
    elif cond == "clipped":
        x *= 4 * 32767 / np.abs(speech).max()  # peaks 12 dB over full scale
    frames = np.arange(total // FRAME_MS) * FRAME_MS + FRAME_MS / 2  # frame centres
    on, off = lead + onset, lead + offset
    return Stream(to_call(x, rate), on, off, (frames >= on) & (frames < off))


def noise_only(rng: np.random.Generator, kind: str, rate: int, recordings: list[Path]) -> Pcm:
    """NOISE_ONLY_S of one noise at NOISE_ONLY_DBFS (``line``: LINE_DBFS white noise)."""
    n = int(NOISE_ONLY_S * rate)
    rms = 32768 * 10 ** (NOISE_ONLY_DBFS / 20)
    if kind == "line":
        return to_call(rng.normal(0, 32768 * 10 ** (LINE_DBFS / 20), n), rate)
    if kind == "babble":
        return to_call(scaled(babble(rng, n, rate, recordings, Path()), rms), rate)
    return to_call(scaled(generated(rng, kind, n, rate), rms), rate)
