"""SmoothQuant-style rescaling of the FFN down-projections, then dynamic int8 (per-channel) quantisation.

    OMP_NUM_THREADS=1 nice -n 19 /tmp/enc-venv/bin/python smooth.py mpnet [alpha=0.5]

Plain dynamic int8 quantisation ruins all-mpnet-base-v2 (cosine to fp32 ~0.7; per-channel 0.87): the
input of each FFN down-projection (GELU output) has a few channels with very large values, and
onnxruntime's dynamic quantisation uses one scale per activation tensor. Here each such MatMul X @ W
becomes (X * (1/s)) @ (diag(s) W) with s_j = max|X_j|^alpha / max|W_j|^(1-alpha) (Xiao et al. 2023,
SmoothQuant); max|X_j| is measured on 512 CLINC150 *train* texts (no banking77 text is used).
Writes $ENC_BUILD/<name>-sq<100 alpha>.onnx (fp32, rescaled) and <name>-int8-sq<100 alpha>.onnx.
"""

import csv
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

sys.path.insert(0, str(Path(__file__).parent))
import enc

name = sys.argv[1]
alpha = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
src = enc.BUILD / f"{name}.onnx"
model = onnx.load(str(src))
inits = {i.name: i for i in model.graph.initializer}
targets = [n for n in model.graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name
           and "attention" not in n.name]
print(len(targets), "FFN down-projections")

# 1. calibration: expose the inputs of the target MatMuls as outputs
with open(enc.DATA / "clinc150" / "train.csv", newline="", encoding="utf-8") as f:
    calib = [r["text"] for r in csv.DictReader(f)][::30][:512]
probe = onnx.load(str(src))
for n in targets:
    probe.graph.output.append(helper.make_tensor_value_info(n.input[0], onnx.TensorProto.FLOAT, None))
tmp = enc.BUILD / f"{name}-probe.onnx"
onnx.save(probe, str(tmp))
so = ort.SessionOptions()
so.intra_op_num_threads = 1
sess = ort.InferenceSession(str(tmp), so, providers=["CPUExecutionProvider"])
e = enc.OnnxEncoder(name, False)
amax = {n.input[0]: np.zeros(0) for n in targets}
for i in range(0, len(calib), 32):
    ids, mask = e.tokenize(calib[i : i + 32])
    outs = sess.run([n.input[0] for n in targets], {"input_ids": ids, "attention_mask": mask})
    m = mask.astype(bool)
    for n, o in zip(targets, outs):
        v = np.abs(o[m]).max(0)
        amax[n.input[0]] = v if amax[n.input[0]].size == 0 else np.maximum(amax[n.input[0]], v)
tmp.unlink()

# 2. rescale
for n in targets:
    wname = n.input[1]
    W = numpy_helper.to_array(inits[wname]).astype(np.float32)  # [in, out]
    xa = np.maximum(amax[n.input[0]], 1e-5)
    wa = np.maximum(np.abs(W).max(1), 1e-5)
    s = (xa**alpha / wa ** (1 - alpha)).astype(np.float32)
    inits[wname].CopyFrom(numpy_helper.from_array(W * s[:, None], wname))
    sname = n.name + "_smooth_inv"
    model.graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), sname))
    mul_out = n.input[0] + "_smoothed_" + n.name.replace("/", "_")
    mul = helper.make_node("Mul", [n.input[0], sname], [mul_out], name=n.name + "_smooth")
    idx = list(model.graph.node).index(n)
    model.graph.node.insert(idx, mul)
    n.input[0] = mul_out
    print(f"  {n.name}: max|X| {xa.max():.1f} (median {np.median(xa):.2f}) -> after {np.max(xa / s):.2f}")
tag = f"sq{round(alpha * 100)}"
fp = enc.BUILD / f"{name}-{tag}.onnx"
onnx.save(model, str(fp))
out = enc.BUILD / f"{name}-int8-{tag}.onnx"
quantize_dynamic(str(fp), str(out), weight_type=QuantType.QInt8, per_channel=True)

texts, _ = enc.banking77()
sample = texts[:200]
ref = e.encode(sample)
q = enc.OnnxEncoder(name, False)
q.sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
cos = (ref * q.encode(sample)).sum(1)
print(f"{name}-int8-{tag} (alpha {alpha}): cosine to fp32 on 200 banking77 texts mean {cos.mean():.4f} "
      f"min {cos.min():.4f}  size {out.stat().st_size / 1e6:.1f} MB")
