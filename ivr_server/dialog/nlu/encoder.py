"""Sentence embeddings from the bundled all-MiniLM-L6-v2 (int8 ONNX): no torch, no download.

One onnxruntime session per process, one intra-op thread: the server classifies one short
utterance at a time (~3 ms), and the second core belongs to speech recognition.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ivr_server.errors import NluError

BUNDLED = Path(__file__).parent / "bundled" / "minilm-l6-int8"
MAX_TOKENS = 64  # utterances on a phone line are short; longer ones are cut, not rejected


class SentenceEncoder:
    def __init__(self, directory: Path = BUNDLED, threads: int = 1) -> None:
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
            self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime and tokenizers raise their own types
            raise NluError(f"sentence encoder in {directory} cannot be loaded: {err}") from err
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        # The version names the weights, so a trained intent model is tied to them.
        self.version = "minilm-l6-int8@" + manifest["sha256"]["model.onnx"][:12]
        self.dimension = 384

    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        """Unit-length embeddings, one row per text (float32)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths: less padding
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            encoded = self.tokenizer.encode_batch([texts[i] or " " for i in rows])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (hidden,) = self.session.run(None, feed)
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
        return out


@functools.cache
def bundled_encoder() -> SentenceEncoder:
    return SentenceEncoder()
