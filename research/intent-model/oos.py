"""Out-of-scope scores compared on CLINC150 with frozen embeddings (cached by run.py).

    OMP_NUM_THREADS=1 nice .venv/bin/python research/intent-model/oos.py --encoder minilm-int8 --C 30

Intent = LR (with the oos class) as in run.py variant (a). OOS when the LR says `oos`, or when a
score is below a threshold chosen on 5-fold out-of-fold predictions on train.csv only (rule "recall85":
best in-scope accuracy with out-of-fold oos recall >= 85 %; and "balanced"). Scores compared:
  maxp   max in-scope LR probability (= run.py variant c)
  nn     cosine similarity to the nearest in-scope training utterance
  mix    mean of maxp and nn
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import common
import numpy as np
from run import best_threshold, make_encoder
from sklearn.linear_model import LogisticRegression


def scores(etr, ytr, ete, C):
    clf = LogisticRegression(C=C, max_iter=1000).fit(etr, ytr)
    p = clf.predict_proba(ete)
    pred = clf.classes_[p.argmax(1)]
    maxp = p[:, clf.classes_ != "oos"].max(1)
    ins = etr[ytr != "oos"]
    nn = np.max(ete @ ins.T, axis=1)
    s = {"maxp": maxp, "nn": nn, "mix": (maxp + nn) / 2}
    return pred, {k: np.where(pred == "oos", -1.0, v) for k, v in s.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="minilm-int8")
    ap.add_argument("--C", type=float, default=30.0)
    args = ap.parse_args()
    enc = make_encoder(args.encoder, 1)
    (xt, yt), (xv, yv) = common.clinc150()
    yt, yv = np.array(yt), np.array(yv)
    et, ev = common.cached_embed(enc, xt), common.cached_embed(enc, xv)
    oof_ok = np.zeros(len(yt), bool)
    oof = {k: np.zeros(len(yt)) for k in ("maxp", "nn", "mix")}
    for a, b in common.kfold_indices(list(yt), 5, 0):
        pr, s = scores(et[a], yt[a], et[b], args.C)
        oof_ok[b] = pr == yt[b]
        for k in s:
            oof[k][b] = s[k]
    pred, s = scores(et, yt, ev, args.C)
    is_oos = yv == "oos"
    for k in s:
        for rule, mr in (("balanced", None), ("recall85", 0.85)):
            t = best_threshold(oof[k], oof_ok, yt == "oos", min_recall=mr)
            called = s[k] < t
            acc = ((pred == yv) & ~called)[~is_oos].mean()
            rec = called[is_oos].mean()
            print(
                f"{args.encoder} C={args.C} score {k:5s} rule {rule:8s} threshold {t:.3f}: "
                f"in-scope {100 * acc:.2f} %, oos recall {100 * rec:.2f} %",
                flush=True,
            )


if __name__ == "__main__":
    main()
