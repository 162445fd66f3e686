"""Try dynamic-int8 quantisation settings for an exported encoder; print cosine to fp32 on sample texts.

    OMP_NUM_THREADS=1 nice -n 19 /tmp/enc-venv/bin/python quant.py mpnet
Writes $ENC_BUILD/<name>-int8<suffix>.onnx for each setting.
"""

import sys
from pathlib import Path

import re

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

sys.path.insert(0, str(Path(__file__).parent))
import enc

name = sys.argv[1]
texts, _ = enc.banking77()
sample = texts[:200]
ref = enc.OnnxEncoder(name, False).encode(sample)
SETTINGS = {
    "": {},
    "-pc": {"per_channel": True},
    "-cb": {"extra_options": {"MatMulConstBOnly": True}},
    "-pccb": {"per_channel": True, "extra_options": {"MatMulConstBOnly": True}},
    "-mmcb": {"op_types_to_quantize": ["MatMul"], "extra_options": {"MatMulConstBOnly": True}},
    "-u8rr": {"weight_type": QuantType.QUInt8, "reduce_range": True, "extra_options": {"MatMulConstBOnly": True}},
}
import onnx as _onnx

_mm = [n.name for n in _onnx.load(str(enc.BUILD / f"{name}.onnx"), load_external_data=False).graph.node
       if n.op_type == "MatMul"]
# keep the FFN down-projection (GELU output: heavy-tailed activations) in float
SETTINGS["-pc-noffn"] = {"per_channel": True, "nodes_to_exclude": [n for n in _mm if "/output/dense/" in n]}
# only attention q/k/v/o projections quantised
SETTINGS["-pc-attnonly"] = {"per_channel": True, "nodes_to_exclude": [n for n in _mm if "/dense/" in n]}
for suf in sys.argv[2:] if len(sys.argv) > 2 else SETTINGS:
    kw = dict(weight_type=QuantType.QInt8)
    kw.update(SETTINGS[suf])
    out = enc.BUILD / f"{name}-int8{suf}.onnx"
    quantize_dynamic(str(enc.BUILD / f"{name}.onnx"), str(out), **kw)
    e = enc.OnnxEncoder(name, True)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    e.sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    cos = (ref * e.encode(sample)).sum(1)
    print(f"{name}-int8{suf}: cosine to fp32 on 200 banking77 texts mean {cos.mean():.4f} min {cos.min():.4f}"
          f"  size {out.stat().st_size / 1e6:.1f} MB", flush=True)
