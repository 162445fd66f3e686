"""Single-utterance latency of a whole configuration (encode every block + LR predict_proba), one thread.

    OMP_NUM_THREADS=1 nice -n 19 /tmp/enc-venv/bin/python latency.py --blocks tfidf,minilm-int8,mpnet-int8-pc --C 10

Trains on all of banking77 (cached embeddings), then times predict on N CLINC150 val utterances after
30 warm-up calls; prints p50/p95 ms and the on-disk size of the ONNX files + tokenizer(s).
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cv
import enc

ap = argparse.ArgumentParser()
ap.add_argument("--blocks", required=True)
ap.add_argument("--weights", default=None)
ap.add_argument("--C", type=float, default=10.0)
ap.add_argument("--n", type=int, default=500)
a = ap.parse_args()
blocks = a.blocks.split(",")
weights = [float(w) for w in a.weights.split(",")] if a.weights else [1.0] * len(blocks)
texts, y = enc.banking77()
embs = [None if b == "tfidf" else enc.cached(b, texts) for b in blocks]
m = cv.Model(blocks, weights, a.C).fit(texts, y, embs)
encs = [None if b == "tfidf" else enc.OnnxEncoder(b, threads=1) for b in blocks]
with open(enc.DATA / "clinc150" / "val.csv", newline="", encoding="utf-8") as f:
    val = [r["text"] for r in csv.DictReader(f)]
rng = np.random.default_rng(0)
sample = [val[i] for i in rng.choice(len(val), a.n + 30, replace=False)]


def classify(t):
    e = [None if x is None else x.encode([t]) for x in encs]
    return m.classes[m.proba([t], e).argmax()]


for t in sample[:30]:
    classify(t)
ts = []
for t in sample[30:]:
    t0 = time.perf_counter()
    classify(t)
    ts.append(time.perf_counter() - t0)
ms = np.array(ts) * 1000
size = 0
for b in blocks:
    if b != "tfidf":
        size += (enc.BUILD / f"{b}.onnx").stat().st_size + (enc.BUILD / f"{b.split('-')[0]}.tokenizer.json").stat().st_size
print(f"{a.blocks} w={weights} C={a.C:g}: p50 {np.percentile(ms, 50):.2f} ms  p95 {np.percentile(ms, 95):.2f} ms "
      f"(n={a.n}); model files {size / 1e6:.1f} MB")
