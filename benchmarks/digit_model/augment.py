"""Telephone-channel augmentation (a random speaker speed, phone band, tilt, level, mu-law and
noise) and the features the classifier trains on: the run-time ``prepare()`` then the wheel's
log-mel front end, as the shipped ONNX graph computes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from benchmarks.digit_model.data import load_fsdd, synth
from benchmarks.digit_model.recipe import Recipe, log
from ivr_server.speech.asr import digit_model as dm

FRAMES = 160  # mel frames of one prepared clip (dm.CLIP_SAMPLES at 16 kHz)
BANDS = 32


def mulaw(x: np.ndarray) -> np.ndarray:
    """Mu-law (mu = 255) round trip at 8 bits: the companding noise of a phone line."""
    y = np.clip(x / 32768.0, -1, 1)
    c = np.round((np.sign(y) * np.log1p(255 * np.abs(y)) / np.log1p(255) + 1) * 127.5) / 127.5 - 1
    out: np.ndarray = (np.sign(c) * ((256.0 ** np.abs(c)) - 1) / 255 * 32768.0).astype(np.float32)
    return out


def augment(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A random speaker/channel: speed (tempo, pitch and formants together, a crude vocal-tract
    length change), phone band and tilt, mu-law, noise. Returns 8 kHz audio."""
    z = dm.at_speed(x, sr, rng.uniform(0.85, 1.18))  # 15 % slower to 18 % faster
    if rng.random() < 0.8:
        band = butter(2, [rng.uniform(100, 400), rng.uniform(3000, 3800)], "band", fs=dm.RATE, output="sos")
        z = sosfilt(band, z).astype(np.float32)
    if rng.random() < 0.5:  # spectral tilt: first-order pre-/de-emphasis
        k = rng.uniform(-0.6, 0.6)
        z = np.append(z[:1], z[1:] - k * z[:-1]).astype(np.float32)
    z *= 10 ** (rng.uniform(-20, 6) / 20)
    if rng.random() < 0.5:
        z = mulaw(z)
    snr = rng.uniform(15, 50)
    noise: np.ndarray = rng.standard_normal(len(z)).astype(np.float32) * np.sqrt((z**2).mean())
    out: np.ndarray = z + noise * 10 ** (-snr / 20)
    return out


class MelFront:
    """The wheel's mel front end, as the merged ONNX graph runs it."""

    def __init__(self, res: Path) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        self.s = ort.InferenceSession(
            str(res / "melspectrogram.onnx"), so, providers=["CPUExecutionProvider"]
        )

    def __call__(self, clip8k: np.ndarray) -> np.ndarray:
        """A prepared 8 kHz clip -> its (FRAMES, BANDS) log-mel."""
        mel: np.ndarray = self.s.run(None, {"input": dm.to_model_rate(clip8k)})[0][0, 0]
        return mel


def augmented_mel(mel: MelFront, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One random channel over a clip, prepared off-centre by up to 80 ms, to log-mel."""
    z = augment(x, sr, rng)
    return mel(dm.prepare(z, dm.RATE, float(rng.uniform(-0.08, 0.08))))


def features(res: Path, r: Recipe) -> dict[str, np.ndarray]:
    """Log-mel of the clean FSDD clips, r.fsdd_aug augmented copies of each and r.synth_aug of
    each synthetic render, with digit labels (and speakers for FSDD); cached as one npz."""
    out = r.features_file
    if out.is_file():
        return dict(np.load(out))
    mel, rng = MelFront(res), np.random.default_rng(r.seed + 1)
    fsdd = load_fsdd(r.fsdd)
    clean = np.stack([mel(dm.prepare(x, sr)) for _, _, x, sr in fsdd])
    aug_m, aug_y, aug_s = [], [], []
    for d, s, x, sr in fsdd:
        for _ in range(r.fsdd_aug):
            aug_m.append(augmented_mel(mel, x, sr, rng))
            aug_y.append(d)
            aug_s.append(s)
    raw = np.load(synth(r), allow_pickle=True)
    syn_m, syn_y = [], []
    for y, sr, x in zip(raw["y"], raw["sr"], raw["audio"], strict=True):
        for _ in range(r.synth_aug):
            syn_m.append(augmented_mel(mel, x, int(sr), rng))
            syn_y.append(int(y))
    feats = {
        "clean": clean,
        "clean_y": np.array([i[0] for i in fsdd]),
        "clean_s": np.array([i[1] for i in fsdd]),
        "aug": np.stack(aug_m),
        "aug_y": np.array(aug_y),
        "aug_s": np.array(aug_s),
        "syn": np.stack(syn_m),
        "syn_y": np.array(syn_y),
    }
    np.savez(out, **feats)  # type: ignore[arg-type]  # the stubs fear a key named allow_pickle
    log(f"features: {len(clean)} clean, {len(aug_m)} FSDD-augmented, {len(syn_m)} synthetic -> {out.name}")
    return feats
