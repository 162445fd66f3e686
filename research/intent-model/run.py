"""Measure one intent-classifier configuration on banking77 and CLINC150 (issue 4).

    OMP_NUM_THREADS=1 nice .venv/bin/python research/intent-model/run.py --features minilm
    ... --features tfidf | minilm | minilm-int8 | minilm-torch | wordllama | tfidf+minilm | minilm,wordllama

Prints, and appends as one JSON line to $INTENT_BUILD/results.jsonl:
- banking77: 5-fold stratified CV accuracy (StratifiedKFold shuffle, seed 0) with all training rows,
  and 10-shot: 10 examples per intent drawn (numpy seed = fold number) from each fold's training part,
  tested on that fold's full held-out part; also the expected calibration error (15 bins) of the full model.
- CLINC150: trained on train.csv, scored on val.csv: in-scope accuracy and oos recall for
  (a) training with the oos class, (b) in-scope-only model + max-probability threshold,
  (c) oos class + threshold. Thresholds are chosen on out-of-fold predictions on train.csv only
  (5 folds), either maximising (in-scope accuracy + oos recall) / 2 ("balanced") or maximising in-scope
  accuracy subject to out-of-fold oos recall >= 85 % ("recall85"); val.csv is never used to choose anything.
- latency of classify(one utterance) on one thread (encode + predict_proba), p50/p95 over 500 val texts.
- training times: banking77 full fold, CLINC full, and a "flow" of 20 intents x 15 phrases
  (banking77, seed 0) including encoding the phrases from scratch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import common
import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion


def make_encoder(name: str, threads: int):
    if "," in name:  # several encoders, embeddings concatenated (each block L2-normalised)
        return common.Concat([make_encoder(n, threads) for n in name.split(",")])
    if name == "minilm":
        return common.MiniLMOnnx(common.BUILD / "minilm.onnx", threads=threads)
    if name == "minilm-int8":
        return common.MiniLMOnnx(common.BUILD / "minilm-int8.onnx", threads=threads)
    if name == "minilm-torch":
        return common.MiniLMTorch(threads=threads)
    if name == "wordllama":
        return common.WordLlama()
    raise SystemExit(f"unknown encoder {name}")


class IntentModel:
    """Features (TF-IDF and/or a frozen sentence encoder) + multinomial logistic regression."""

    def __init__(self, features: str, encoder=None, C: float = 10.0, emb_weight: float = 1.0):
        parts = features.split("+")
        self.use_tfidf = "tfidf" in parts
        self.encoder = encoder if any(p != "tfidf" for p in parts) else None
        self.C = C
        self.emb_weight = emb_weight

    def _tfidf(self):
        return FeatureUnion(
            [
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, lowercase=True, min_df=1
                    ),
                ),
                (
                    "word",
                    TfidfVectorizer(
                        analyzer="word",
                        ngram_range=(1, 2),
                        sublinear_tf=True,
                        lowercase=True,
                        token_pattern=r"(?u)\b\w+\b",
                    ),
                ),
            ]
        )

    def features(self, texts, emb=None, fit=False):
        blocks = []
        if self.use_tfidf:
            x = self.vec.fit_transform(texts) if fit else self.vec.transform(texts)
            blocks.append(x / np.sqrt(2.0))  # two L2-normalised blocks -> unit norm overall
        if self.encoder is not None:
            if emb is None:
                emb = self.encoder.encode(texts)
            blocks.append(sp.csr_matrix(emb * self.emb_weight) if self.use_tfidf else emb * self.emb_weight)
        if len(blocks) == 1:
            return blocks[0]
        return sp.hstack(blocks).tocsr()

    def fit(self, texts, labels, emb=None):
        if self.use_tfidf:
            self.vec = self._tfidf()
        x = self.features(texts, emb, fit=True)
        self.clf = LogisticRegression(C=self.C, max_iter=1000)
        self.clf.fit(x, labels)
        self.classes = self.clf.classes_
        return self

    def predict_proba(self, texts, emb=None):
        return self.clf.predict_proba(self.features(texts, emb))


def ece(prob: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    conf = prob.max(1)
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(e)


def subset(lst, idx):
    return [lst[i] for i in idx]


def best_threshold(
    maxp: np.ndarray, pred_in_ok: np.ndarray, is_oos: np.ndarray, min_recall: float | None = None
) -> float:
    """Threshold maximising (in-scope accuracy + oos recall)/2 on out-of-fold training predictions.

    maxp: max in-scope probability; pred_in_ok: argmax correct (for in-scope rows);
    is_oos: row is oos. A row is called oos when maxp < t (or when the model predicts oos itself,
    already folded into pred_in_ok/maxp by the caller)."""
    best, bt = -1.0, 0.0
    for t in np.unique(np.round(maxp, 3)):
        called_oos = maxp < t
        acc = (pred_in_ok & ~called_oos)[~is_oos].mean()
        rec = called_oos[is_oos].mean()
        s = (acc + rec) / 2 if min_recall is None else (acc if rec >= min_recall else -1.0)
        if s > best:
            best, bt = s, float(t)
    return bt


def clinc_scores(model_factory, tr, va, emb_tr, emb_va, seed=0):
    (xt, yt), (xv, yv) = tr, va
    yt, yv = np.array(yt), np.array(yv)
    out = {}
    res = {}
    # --- (a)/(c) with the oos class; (b) without it
    for mode in ("with_oos", "inscope_only"):
        keep = np.ones(len(yt), bool) if mode == "with_oos" else yt != "oos"
        t0 = time.perf_counter()
        m = model_factory().fit(
            subset(xt, np.where(keep)[0]), yt[keep], None if emb_tr is None else emb_tr[keep]
        )
        train_s = time.perf_counter() - t0
        p = m.predict_proba(xv, emb_va)
        cls = m.classes
        inscope_cols = cls != "oos"
        pred = cls[p.argmax(1)]
        # max probability over in-scope classes; a predicted 'oos' counts as maxp=0
        maxp = np.where(pred == "oos", 0.0, p[:, inscope_cols].max(1))
        # out-of-fold thresholds on train only
        oof_maxp = np.zeros(len(yt))
        oof_ok = np.zeros(len(yt), bool)
        for f, (a, b) in enumerate(common.kfold_indices(list(yt), 5, seed)):
            a = a[keep[a]]
            mm = model_factory().fit(subset(xt, a), yt[a], None if emb_tr is None else emb_tr[a])
            pb = mm.predict_proba(subset(xt, b), None if emb_tr is None else emb_tr[b])
            pr = mm.classes[pb.argmax(1)]
            oof_ok[b] = pr == yt[b]
            oof_maxp[b] = np.where(pr == "oos", 0.0, pb[:, mm.classes != "oos"].max(1))
        thresholds = {
            "balanced": best_threshold(oof_maxp, oof_ok, yt == "oos"),
            "recall85": best_threshold(oof_maxp, oof_ok, yt == "oos", min_recall=0.85),
        }
        is_oos = yv == "oos"
        for use_t in (False, "balanced", "recall85") if mode == "with_oos" else ("balanced", "recall85"):
            thr = thresholds[use_t] if use_t else 0.0
            called_oos = maxp < thr if use_t else pred == "oos"
            acc = ((pred == yv) & ~called_oos)[~is_oos].mean()
            rec = called_oos[is_oos].mean()
            key = {
                ("with_oos", False): "a_oos_class",
                ("inscope_only", "balanced"): "b_threshold_balanced",
                ("inscope_only", "recall85"): "b_threshold_recall85",
                ("with_oos", "balanced"): "c_oos_class+threshold_balanced",
                ("with_oos", "recall85"): "c_oos_class+threshold_recall85",
            }[(mode, use_t)]
            res[key] = {
                "inscope_acc": round(100 * acc, 2),
                "oos_recall": round(100 * rec, 2),
                "threshold": round(thr, 3) if use_t else None,
            }
        out[f"train_s_{mode}"] = round(train_s, 1)
    out["variants"] = res
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", required=True)
    ap.add_argument("--C", type=float, default=10.0)
    ap.add_argument("--emb-weight", type=float, default=1.0)
    ap.add_argument("--embed-threads", type=int, default=int(os.environ.get("EMBED_THREADS", "1")))
    ap.add_argument("--skip", default="", help="comma list of: b77,fewshot,clinc,latency")
    args = ap.parse_args()
    skip = set(args.skip.split(",")) - {""}

    enc_name = next((p for p in args.features.split("+") if p != "tfidf"), None)
    enc = make_encoder(enc_name, args.embed_threads) if enc_name else None
    factory = lambda: IntentModel(args.features, enc, C=args.C, emb_weight=args.emb_weight)  # noqa: E731
    row = {
        "features": args.features,
        "C": args.C,
        "emb_weight": args.emb_weight,
        "cmd": "OMP_NUM_THREADS=1 nice .venv/bin/python research/intent-model/run.py "
        + " ".join(sys.argv[1:]),
    }

    # ---------------- banking77
    bx, by = common.banking77()
    by_a = np.array(by)
    bemb = common.cached_embed(enc, bx) if enc else None
    folds = common.kfold_indices(by, 5, 0)
    if "b77" not in skip:
        accs, eces, tts = [], [], []
        for tr, te in folds:
            t0 = time.perf_counter()
            m = factory().fit(subset(bx, tr), by_a[tr], None if bemb is None else bemb[tr])
            tts.append(time.perf_counter() - t0)
            p = m.predict_proba(subset(bx, te), None if bemb is None else bemb[te])
            ok = m.classes[p.argmax(1)] == by_a[te]
            accs.append(ok.mean())
            eces.append(ece(p, ok))
        row["b77_full_acc"] = round(100 * float(np.mean(accs)), 2)
        row["b77_full_folds"] = [round(100 * float(a), 2) for a in accs]
        row["b77_full_ece"] = round(100 * float(np.mean(eces)), 2)
        row["b77_full_train_s"] = round(float(np.mean(tts)), 1)
        print(
            f"banking77 5-fold full: {row['b77_full_acc']} % (folds {row['b77_full_folds']}), "
            f"ECE {row['b77_full_ece']} %, train {row['b77_full_train_s']} s/fold",
            flush=True,
        )
    if "fewshot" not in skip:
        accs = []
        for f, (tr, te) in enumerate(folds):
            pick = common.few_shot(tr, by, 10, seed=f)
            m = factory().fit(subset(bx, pick), by_a[pick], None if bemb is None else bemb[pick])
            p = m.predict_proba(subset(bx, te), None if bemb is None else bemb[te])
            accs.append((m.classes[p.argmax(1)] == by_a[te]).mean())
        row["b77_10shot_acc"] = round(100 * float(np.mean(accs)), 2)
        row["b77_10shot_folds"] = [round(100 * float(a), 2) for a in accs]
        print(f"banking77 10-shot: {row['b77_10shot_acc']} % (folds {row['b77_10shot_folds']})", flush=True)

    # ---------------- flow-sized training (20 intents x 15 phrases), encoding included
    cats = sorted(set(by))[:20]
    rng = np.random.default_rng(0)
    pick = []
    for c in cats:
        idx = np.where(by_a == c)[0]
        pick.extend(rng.choice(idx, 15, replace=False).tolist())
    t0 = time.perf_counter()
    factory().fit(subset(bx, pick), by_a[pick])
    row["flow_20x15_train_s"] = round(time.perf_counter() - t0, 3)
    print(f"flow 20 intents x 15 phrases: trained in {row['flow_20x15_train_s']} s", flush=True)

    # ---------------- CLINC150
    tr, va = common.clinc150()
    if "clinc" not in skip:
        etr = common.cached_embed(enc, tr[0]) if enc else None
        eva = common.cached_embed(enc, va[0]) if enc else None
        c = clinc_scores(factory, tr, va, etr, eva)
        row["clinc"] = c
        for k, v in c["variants"].items():
            print(
                f"CLINC150 val {k}: in-scope {v['inscope_acc']} %, oos recall {v['oos_recall']} %"
                f" (threshold {v['threshold']})",
                flush=True,
            )
        print(f"CLINC150 train time: {c['train_s_with_oos']} s", flush=True)

    # ---------------- latency, one thread, one utterance at a time
    if "latency" not in skip:
        enc1 = make_encoder(enc_name, 1) if enc_name else None
        m = IntentModel(args.features, enc1, C=args.C, emb_weight=args.emb_weight).fit(bx, by_a, bemb)
        texts = va[0][:500]
        for t in texts[:20]:
            m.predict_proba([t])
        times = []
        for t in texts:
            t0 = time.perf_counter()
            m.predict_proba([t])
            times.append(time.perf_counter() - t0)
        p50, p95 = common.percentile_ms(times)
        row["latency_ms_p50"], row["latency_ms_p95"] = round(p50, 2), round(p95, 2)
        print(f"classify latency (1 thread, banking77 model): p50 {p50:.2f} ms, p95 {p95:.2f} ms", flush=True)

    with open(common.BUILD / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
