"""Encoder-only single-utterance latency (one thread): p50/p95 ms over N CLINC150 val texts.

    OMP_NUM_THREADS=1 nice -n 19 /tmp/enc-venv/bin/python enclat.py mpnet-int8-pc-noffn minilm-int8 ...
"""

import csv
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent))
import enc

N = 300
with open(enc.DATA / "clinc150" / "val.csv", newline="", encoding="utf-8") as f:
    texts = [r["text"] for r in csv.DictReader(f)][:N]
for name in sys.argv[1:]:
    base = name.split("-")[0]
    e = enc.OnnxEncoder(base, False, threads=1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    e.sess = ort.InferenceSession(str(enc.BUILD / f"{name}.onnx"), so, providers=["CPUExecutionProvider"])
    for t in texts[:30]:
        e.encode([t])
    ts = []
    for t in texts:
        t0 = time.perf_counter()
        e.encode([t])
        ts.append(time.perf_counter() - t0)
    a = np.array(ts) * 1000
    print(f"{name}: p50 {np.percentile(a, 50):.2f} ms  p95 {np.percentile(a, 95):.2f} ms  (n={N})", flush=True)
