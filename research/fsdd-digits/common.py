"""Shared helpers: FSDD loading, telephone-band simulation, speech-embedding features."""
import os
import re
import wave
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly, butter, sosfilt

FSDD = Path("/work/shared/data/fsdd/recordings")
NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
SPEAKERS = ["jackson", "nicolas", "yweweler"]
HERE = Path(__file__).resolve().parent
RES = HERE / "dl" / "lk" / "livekit" / "wakeword" / "resources"


def read_wav(path):
    with wave.open(str(path)) as w:
        sr = w.getframerate()
        n = w.getnframes()
        ch = w.getnchannels()
        sw = w.getsampwidth()
        raw = w.readframes(n)
    if sw == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32)
    elif sw == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128) * 256
    elif sw == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 65536
    else:
        raise ValueError(sw)
    if ch > 1:
        x = x.reshape(-1, ch)[:, 0]
    return x, sr


def load_fsdd():
    items = []
    for f in sorted(os.listdir(FSDD)):
        m = NAME.match(f)
        if m:
            x, sr = read_wav(FSDD / f)
            assert sr == 8000, (f, sr)
            items.append((int(m.group(1)), m.group(2), int(m.group(3)), x))
    return items


# ---- G.711 mu-law round trip (telephone channel) ----
def mulaw_roundtrip(x):
    x = np.clip(x / 32768.0, -1, 1)
    mu = 255.0
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1) / 2 * 255) / 255 * 2 - 1
    z = np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu
    return (z * 32768.0).astype(np.float32)


def telephone(x, sr, rng=None, bandpass=True):
    """Any-rate float (int16 scale) -> 8 kHz, 300-3400 Hz-ish, mu-law."""
    if sr != 8000:
        g = np.gcd(sr, 8000)
        x = resample_poly(x, 8000 // g, sr // g).astype(np.float32)
    if bandpass:
        lo = 300 if rng is None else rng.uniform(100, 350)
        hi = 3400 if rng is None else rng.uniform(3200, 3800)
        sos = butter(4, [lo, hi], btype="band", fs=8000, output="sos")
        x = sosfilt(sos, x).astype(np.float32)
    return mulaw_roundtrip(x)


def to16k(x8):
    return resample_poly(x8, 2, 1).astype(np.float32)


# ---- openWakeWord / Google speech_embedding features ----
_sess = {}


def _ort():
    import onnxruntime as ort
    if not _sess:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        _sess["mel"] = ort.InferenceSession(str(RES / "melspectrogram.onnx"), so, providers=["CPUExecutionProvider"])
        _sess["emb"] = ort.InferenceSession(str(RES / "embedding_model.onnx"), so, providers=["CPUExecutionProvider"])
    return _sess["mel"], _sess["emb"]


def normalize_level(x, target_rms_db=-20.0):
    """Scale so speech-active RMS is at a fixed level (int16 scale)."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160) if len(x) >= 160 else x.reshape(1, -1)
    e = np.sqrt((frames ** 2).mean(1) + 1e-9)
    act = np.sort(e)[-max(1, len(e) // 4):].mean()
    return x * (32768 * 10 ** (target_rms_db / 20) / (act + 1e-9))


def embed(x16, pad_s=0.4, total_s=None):
    """16 kHz int16-scale float -> (n_windows, 96) embeddings. Pads silence around the clip."""
    mel_s, emb_s = _ort()
    pad = np.zeros(int(pad_s * 16000), np.float32)
    y = np.concatenate([pad, x16.astype(np.float32), pad])
    min_len = int((76 + 8 * 3) * 160 + 480)
    if total_s is not None:
        min_len = max(min_len, int(total_s * 16000))
    if len(y) < min_len:
        extra = min_len - len(y)
        y = np.concatenate([np.zeros(extra // 2, np.float32), y, np.zeros(extra - extra // 2, np.float32)])
    mel = mel_s.run(None, {mel_s.get_inputs()[0].name: y[None, :]})[0]
    mel = np.squeeze(mel) / 10.0 + 2.0  # (T, 32)
    T = mel.shape[0]
    starts = list(range(0, T - 76 + 1, 4))
    wins = np.stack([mel[s:s + 76] for s in starts])[..., None].astype(np.float32)
    e = emb_s.run(None, {emb_s.get_inputs()[0].name: wins})[0]
    return e.reshape(len(starts), 96), mel


def pooled(e):
    """Fixed-size utterance vector from a variable-length embedding sequence."""
    return np.concatenate([e.mean(0), e.max(0), e.std(0)])
