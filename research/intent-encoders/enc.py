"""Shared pieces: banking77 data, ONNX sentence encoders, embedding cache, CV protocol, features.

Protocol identical to research/intent-model: StratifiedKFold(5, shuffle=True, random_state=0) over
banking77/train.csv; 10-shot = 10 per intent drawn from each fold's training part with
numpy.random.default_rng(fold), tested on the whole held-out fold; mean of 5 folds.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("IVR_DATA", "/work/shared/data"))
BUILD = Path(os.environ.get("ENC_BUILD", "/tmp/enc-build"))
BUILD.mkdir(parents=True, exist_ok=True)
THREADS = int(os.environ.get("OMP_NUM_THREADS", "1"))


def banking77() -> tuple[list[str], np.ndarray]:
    with open(DATA / "banking77" / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([r["category"] for r in rows])


def folds(labels, k: int = 5, seed: int = 0):
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def few_shot(train_idx: np.ndarray, labels, n: int, seed: int) -> np.ndarray:
    """Same draw as research/intent-model/common.few_shot."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = {}
    for i in train_idx:
        by.setdefault(labels[i], []).append(i)
    pick: list[int] = []
    for lab in sorted(by):
        arr = np.array(by[lab])
        pick.extend(rng.choice(arr, size=min(n, len(arr)), replace=False).tolist())
    return np.array(sorted(pick))


def mean_pool(h: np.ndarray, mask) -> np.ndarray:
    m = np.asarray(mask)[..., None].astype(np.float32)
    v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    return (v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


class OnnxEncoder:
    """Mean-pooled, L2-normalised transformer embedding run by onnxruntime + tokenizers."""

    def __init__(self, name: str, int8: bool = False, threads: int = THREADS, max_len: int = 64):
        """name: model family (mpnet, minilm) or a full ONNX file stem in BUILD (mpnet-int8-sq, ...)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = name if "-" in name else f"{name}{'-int8' if int8 else ''}"
        name = name.split("-")[0]
        self.path = BUILD / f"{self.name}.onnx"
        self.tok = Tokenizer.from_file(str(BUILD / f"{name}.tokenizer.json"))
        self.tok.enable_truncation(max_len)
        pad_id = 1 if name.startswith("mpnet") else 0
        self.tok.enable_padding(pad_id=pad_id, pad_token="<pad>" if pad_id == 1 else "[PAD]")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])

    def tokenize(self, texts):
        enc = self.tok.encode_batch(list(texts))
        return np.array([e.ids for e in enc], np.int64), np.array([e.attention_mask for e in enc], np.int64)

    def encode(self, texts, batch: int = 64) -> np.ndarray:
        texts = list(texts)
        order = np.argsort([len(t) for t in texts])
        res = None
        for i in range(0, len(texts), batch):
            idx = order[i : i + batch]
            ids, mask = self.tokenize([texts[j] for j in idx])
            h = self.sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            v = mean_pool(h, mask)
            if res is None:
                res = np.zeros((len(texts), v.shape[1]), np.float32)
            res[idx] = v
        return res


def cached(name: str, texts: list[str]) -> np.ndarray:
    """Embeddings of texts by encoder `name` (e.g. mpnet-int8, minilm), cached under BUILD."""
    h = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
    p = BUILD / f"emb-{name}-{h}.npy"
    if p.exists():
        return np.load(p)
    t = time.perf_counter()
    v = OnnxEncoder(name).encode(texts)
    print(f"  [embed {name}: {len(texts)} texts in {time.perf_counter() - t:.1f} s]", flush=True)
    np.save(p, v)
    return v


def tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True,
                                     token_pattern=r"(?u)\b\w+\b")),
        ]
    )
