"""Silero VAD (a small LSTM network) run as ONNX with onnxruntime, without torch.

The model ships inside the ``silero-vad`` wheel, whose metadata requires torch although the ONNX
file needs only onnxruntime; install it with ``pip install --no-deps silero-vad`` (as
scripts/bootstrap does). We find the file through the distribution's metadata and never import
the ``silero_vad`` package, which would import torch.

The model takes windows of 512 samples at 16 kHz (256 at 8 kHz), each prefixed by the last 64
(32) samples of the window before, and carries an LSTM state between windows. 20 ms frames do not
divide 32 ms windows, so frames are buffered: a frame that completes a window gets that window's
probability, one that does not repeats the last (a latency of at most 12 ms behind the frame).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ivr_server.errors import EngineUnavailable
from ivr_server.media.g711 import Pcm
from ivr_server.speech.vad.base import check_frame, check_rate

_DISTRIBUTION = "silero-vad"
_MODEL_IN_WHEEL = "silero_vad/data/silero_vad.onnx"  # the 8 kHz + 16 kHz model
_INSTALL_HINT = "pip install onnxruntime && pip install --no-deps silero-vad"


def model_path() -> Path:
    """The ONNX model inside the installed silero-vad wheel."""
    from importlib import metadata

    try:
        path = Path(str(metadata.distribution(_DISTRIBUTION).locate_file(_MODEL_IN_WHEEL)))
    except metadata.PackageNotFoundError as err:
        raise EngineUnavailable(f"the silero VAD model is not installed: {_INSTALL_HINT}") from err
    if not path.is_file():
        raise EngineUnavailable(f"silero-vad is installed but {path} is missing: reinstall, {_INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=4)
def _session(path: Path) -> Any:
    """One inference session per process, shared by every call: the model is read-only and
    ``run`` is thread-safe; each detector keeps its own LSTM state."""
    try:
        import onnxruntime
    except ImportError as err:
        raise EngineUnavailable(f"the silero VAD needs onnxruntime: {_INSTALL_HINT}") from err
    options = onnxruntime.SessionOptions()
    # One thread per inference: many calls share two cores, and a window is too small to split.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the model's unused initializers warn on every load
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class SileroDetector:
    name = "silero"

    def __init__(self, sample_rate: int, model: Path | None = None) -> None:
        check_rate(self.name, sample_rate, (8000, 16000))
        self.sample_rate = sample_rate
        self._session = _session(model or model_path())
        self._window = 512 if sample_rate == 16000 else 256
        self._context_size = 64 if sample_rate == 16000 else 32
        self._sr = np.array(sample_rate, dtype=np.int64)
        self._state: npt.NDArray[np.float32] = np.zeros((2, 1, 128), dtype=np.float32)
        self._context: npt.NDArray[np.float32] = np.zeros(self._context_size, dtype=np.float32)
        self._pending: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._last = 0.0

    def probability(self, pcm: Pcm) -> float:
        check_frame(self.name, self.sample_rate, pcm)
        buf = np.concatenate([self._pending, pcm.astype(np.float32) / 32768.0])
        while len(buf) >= self._window:
            x = np.concatenate([self._context, buf[: self._window]])[None, :]
            out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
            self._last = float(out[0, 0])
            self._context = x[0, -self._context_size :]
            buf = buf[self._window :]
        self._pending = buf
        return self._last

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(self._context_size, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._last = 0.0
