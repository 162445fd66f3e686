"""banking77 5-fold CV (full and 10-shot) for feature blocks + logistic regression (+ optional tricks).

    OMP_NUM_THREADS=1 nice -n 19 /tmp/enc-venv/bin/python cv.py --blocks mpnet --C 10,30
    ... --blocks tfidf,minilm-int8,mpnet-int8-pc --weights 1,1,1.5 --C 10 --shots 0,10
    ... --ncm 0.3 --ncm-scale 20      # mix LR probabilities with a nearest-class-centroid softmax
    ... --aug 2                       # 10-shot only: add 2 ASR-like noisy copies of each training phrase

Blocks: "tfidf" (char_wb 2-5 + word 1-2, fitted on the fold's training part, L2-normalised) or an encoder
name known to enc.cached (minilm, minilm-int8, mpnet, mpnet-int8-pc, ...). Each block has unit norm and is
multiplied by its weight. Prints per-fold accuracy and appends one JSON line per (C, shots) to
$ENC_BUILD/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
import enc

NUM = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
       "7": "seven", "8": "eight", "9": "nine"}
HOMO = {"card": "car", "top": "stop", "cash": "catch", "pin": "pen", "fee": "free", "my": "i", "to": "two",
        "for": "four", "the": "a", "is": "as", "account": "count", "transfer": "transfers", "i'm": "i am",
        "didn't": "did not", "can't": "cannot", "what's": "what is", "it's": "it is", "refund": "refunds"}


def asr_noise(text: str, rng: np.random.Generator) -> str:
    """ASR-transcript-like copy: lowercase, no punctuation, digits spelled, some word drops / confusions."""
    t = text.lower()
    words = re.findall(r"[a-z']+|\d", t)
    out = []
    for w in words:
        w = NUM.get(w, w)
        r = rng.random()
        if r < 0.08 and len(words) > 3:
            continue  # deletion
        if r < 0.16 and w in HOMO:
            w = HOMO[w]  # confusion / expansion
        out.append(w.replace("'", "") if rng.random() < 0.5 else w)
    return " ".join(out) or t


class Model:
    def __init__(self, blocks, weights, C, ncm=0.0, ncm_scale=20.0, center=False):
        self.blocks, self.weights, self.C = blocks, weights, C
        self.ncm, self.ncm_scale, self.center = ncm, ncm_scale, center

    def _center(self, embs, fit):
        """Subtract the training mean of each embedding block and re-normalise (optional)."""
        if not self.center:
            return embs
        if fit:
            self.mu = [None if e is None else e.mean(0) for e in embs]
        out = []
        for e, mu in zip(embs, self.mu):
            if e is None:
                out.append(None)
            else:
                z = e - mu
                out.append(z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12))
        return out

    def feats(self, texts, embs, fit=False):
        embs = self._center(embs, fit)
        out, sparse = [], False
        for b, w, e in zip(self.blocks, self.weights, embs):
            if b == "tfidf":
                x = self.vec.fit_transform(texts) if fit else self.vec.transform(texts)
                out.append(x * (w / np.sqrt(2.0)))
                sparse = True
            else:
                out.append(e * w)
        if len(out) == 1:
            return out[0]
        return sp.hstack([sp.csr_matrix(o) for o in out]).tocsr() if sparse else np.hstack(out)

    def fit(self, texts, y, embs):
        if "tfidf" in self.blocks:
            self.vec = enc.tfidf()
        x = self.feats(texts, embs, fit=True)
        self.clf = LogisticRegression(C=self.C, max_iter=2000).fit(x, y)
        self.classes = self.clf.classes_
        if self.ncm:
            dense = [e * w for b, w, e in zip(self.blocks, self.weights, self._center(embs, False)) if b != "tfidf"]
            z = np.hstack(dense)
            z /= np.linalg.norm(z, axis=1, keepdims=True)
            cen = np.stack([z[y == c].mean(0) for c in self.classes])
            self.cen = cen / np.linalg.norm(cen, axis=1, keepdims=True)
        return self

    def proba(self, texts, embs):
        p = self.clf.predict_proba(self.feats(texts, embs))
        if self.ncm:
            dense = [e * w for b, w, e in zip(self.blocks, self.weights, self._center(embs, False)) if b != "tfidf"]
            z = np.hstack(dense)
            z /= np.linalg.norm(z, axis=1, keepdims=True)
            s = z @ self.cen.T * self.ncm_scale
            q = np.exp(s - s.max(1, keepdims=True))
            q /= q.sum(1, keepdims=True)
            p = (1 - self.ncm) * p + self.ncm * q
        return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", required=True)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--C", default="10")
    ap.add_argument("--shots", default="0,10", help="0 = all training rows")
    ap.add_argument("--ncm", type=float, default=0.0)
    ap.add_argument("--ncm-scale", type=float, default=20.0)
    ap.add_argument("--aug", type=int, default=0, help="noisy copies per phrase (10-shot runs only)")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--cv-seed", type=int, default=0, help="StratifiedKFold random_state (protocol: 0)")
    ap.add_argument("--center", action="store_true", help="centre each embedding block on the training mean")
    a = ap.parse_args()
    blocks = a.blocks.split(",")
    weights = [float(w) for w in a.weights.split(",")] if a.weights else [1.0] * len(blocks)
    texts, y = enc.banking77()
    embs = [None if b == "tfidf" else enc.cached(b, texts) for b in blocks]
    fl = enc.folds(y, seed=a.cv_seed)
    for shots in [int(s) for s in a.shots.split(",")]:
        for C in [float(c) for c in a.C.split(",")]:
            accs, t0 = [], time.perf_counter()
            for f in [int(x) for x in a.folds.split(",")]:
                tr, te = fl[f]
                if shots:
                    tr = enc.few_shot(tr, y, shots, f)
                ttx = [texts[i] for i in tr]
                tembs = [None if e is None else e[tr] for e in embs]
                ty = y[tr]
                if shots and a.aug:
                    rng = np.random.default_rng(1000 + f)
                    extra = [asr_noise(t, rng) for _ in range(a.aug) for t in ttx]
                    ttx = ttx + extra
                    ty = np.concatenate([ty] * (a.aug + 1))
                    tembs = [None if b == "tfidf" else np.vstack([e, enc.cached(b, extra)])
                             for b, e in zip(blocks, tembs)]
                m = Model(blocks, weights, C, a.ncm, a.ncm_scale, a.center).fit(ttx, ty, tembs)
                p = m.proba([texts[i] for i in te], [None if e is None else e[te] for e in embs])
                accs.append(float((m.classes[p.argmax(1)] == y[te]).mean()))
                print(f"    shots={shots} C={C:g} fold {f}: {100 * accs[-1]:.2f}", flush=True)
            res = {"blocks": a.blocks, "weights": weights, "C": C, "shots": shots, "ncm": a.ncm,
                   "ncm_scale": a.ncm_scale, "aug": a.aug, "center": a.center, "cv_seed": a.cv_seed, "folds": a.folds,
                   "acc": round(100 * float(np.mean(accs)), 2), "per_fold": [round(100 * x, 2) for x in accs],
                   "seconds": round(time.perf_counter() - t0, 1), "cmd": " ".join(sys.argv[1:])}
            print(json.dumps(res), flush=True)
            with open(enc.BUILD / "results.jsonl", "a") as fh:
                fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
