"""Classify latency of each configuration on ONE thread, one utterance at a time.

    OMP_NUM_THREADS=1 nice .venv/bin/python research/intent-model/latency.py [--configs "minilm;tfidf+minilm-int8;..."]

Each model is trained on all of banking77 (77 intents); the utterances timed are the first 1,000 of
clinc150/val.csv (so unseen, realistic lengths). Prints p50/p95/p99 and the 1-minute load average
before and after (the machine's 2 cores are shared; a load above ~1 inflates the tail).
Also times the same for "minilm" with numpy doing the logistic regression (no sklearn at run time).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import common
import numpy as np
from run import IntentModel, make_encoder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--configs",
        default="tfidf;wordllama;minilm;minilm-int8;minilm-int8,wordllama;tfidf+minilm;tfidf+minilm-int8",
    )
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--C", type=float, default=30.0)
    args = ap.parse_args()
    bx, by = common.banking77()
    texts = common.clinc150()[1][0][: args.n]
    for cfg in args.configs.split(";"):
        enc_name = next((p for p in cfg.split("+") if p != "tfidf"), None)
        enc = make_encoder(enc_name, 1) if enc_name else None
        emb = common.cached_embed(enc, bx) if enc else None
        m = IntentModel(cfg, enc, C=args.C).fit(bx, np.array(by), emb)
        for t in texts[:30]:
            m.predict_proba([t])
        load0 = os.getloadavg()[0]
        times = []
        for t in texts:
            t0 = time.perf_counter()
            m.predict_proba([t])
            times.append(time.perf_counter() - t0)
        a = np.array(times) * 1000
        print(
            f"{cfg:16s} p50 {np.percentile(a, 50):6.2f} ms  p95 {np.percentile(a, 95):6.2f} ms  "
            f"p99 {np.percentile(a, 99):6.2f} ms  (load {load0:.2f} -> {os.getloadavg()[0]:.2f})",
            flush=True,
        )
        if cfg == "minilm":
            # encoder + plain numpy softmax(W x + b): what a torch-free, sklearn-free runtime would do
            W, b = m.clf.coef_.astype(np.float32), m.clf.intercept_.astype(np.float32)
            times = []
            for t in texts:
                t0 = time.perf_counter()
                z = enc.encode([t])[0] @ W.T + b
                p = np.exp(z - z.max())
                p /= p.sum()
                times.append(time.perf_counter() - t0)
            a = np.array(times) * 1000
            print(
                f"{'minilm (numpy LR)':16s} p50 {np.percentile(a, 50):6.2f} ms  p95 {np.percentile(a, 95):6.2f} ms  "
                f"p99 {np.percentile(a, 99):6.2f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
