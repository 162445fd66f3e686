"""Sentence embeddings for the intent model, from int8 ONNX encoders: no torch, no download.

Two encoders (research/intent-encoders/README.md measured them):
- ``minilm``: all-MiniLM-L6-v2, bundled with the package (23 MB), ~3 ms an utterance;
- ``mpnet``: MiniLM's embedding beside all-mpnet-base-v2's (int8, 110 MB, built into the
  environment by ``scripts/build-intent-encoder mpnet``, which scripts/bootstrap runs):
  banking77 +0.6-0.7 points with all rows, +1.2-1.9 with ten per intent, ~12-17 ms.
``auto`` (the default) takes mpnet when it is built and minilm otherwise, saying so once.

One onnxruntime session per encoder and process, one intra-op thread: the server classifies one
short utterance at a time, and the second core belongs to speech recognition.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import structlog
from tokenizers import Tokenizer

from ivr_server.errors import NluError

log = structlog.get_logger(__name__)
BUNDLED = Path(__file__).parent / "bundled" / "minilm-l6-int8"
INSTALLED = Path(sys.prefix) / "share" / "ivr-server" / "encoders"  # where build-intent-encoder puts mpnet
ENCODERS = ("auto", "mpnet", "minilm")
MAX_TOKENS = 64  # utterances on a phone line are short; longer ones are cut, not rejected


class Encoder(Protocol):
    name: str  # minilm | mpnet: what a trained model reloads
    version: str  # names the weights: a trained intent model is tied to them
    dimension: int

    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray: ...


class SentenceEncoder:
    """One ONNX encoder: mean-pooled, unit-length embeddings."""

    def __init__(self, directory: Path = BUNDLED, threads: int = 1, name: str = "minilm") -> None:
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
        self.name = name
        tag = "minilm-l6-int8" if name == "minilm" else f"{name}-int8"
        self.version = f"{tag}@" + manifest["sha256"]["model.onnx"][:12]
        self.dimension = int(manifest.get("dimension", 384))
        self._inputs = {i.name for i in self.session.get_inputs()}  # MPNet takes no token types

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
            (hidden,) = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-9)
        return out


class CombinedEncoder:
    """Several encoders' embeddings side by side (each unit-length)."""

    def __init__(self, name: str, parts: Sequence[Encoder]) -> None:
        self.name = name
        self.parts = list(parts)
        self.version = "+".join(p.version for p in self.parts)
        self.dimension = sum(p.dimension for p in self.parts)

    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        return np.hstack([p.encode(texts, batch) for p in self.parts])


def mpnet_available(directory: Path | None = None) -> bool:
    return ((directory or INSTALLED / "mpnet-int8") / "manifest.json").is_file()


@functools.cache
def encoder_named(name: str, directory: Path | None = None) -> Encoder:
    """``minilm`` or ``mpnet`` (NluError naming what to run when mpnet is not built)."""
    if name == "minilm":
        return SentenceEncoder(BUNDLED)
    if name == "mpnet":
        where = directory or INSTALLED / "mpnet-int8"
        if not mpnet_available(where):
            raise NluError(
                f"the mpnet sentence encoder is not built ({where} has no manifest.json): run "
                "scripts/build-intent-encoder mpnet, or set IVR_NLU_ENCODER=minilm"
            )
        return CombinedEncoder("mpnet", [encoder_named("minilm"), SentenceEncoder(where, name="mpnet")])
    raise NluError(f"unknown sentence encoder {name!r} (choose from {', '.join(ENCODERS)})")


_choice: dict[str, tuple[str, Path | None]] = {"encoder": ("auto", None)}  # the process's choice


def use_encoder(name: str, directory: Path | None = None) -> None:
    """Choose the encoder newly trained intent models use (the CLI does, from the settings); it
    is loaded when first needed (``default_encoder``: the server asks at start-up)."""
    if name not in ENCODERS:
        raise NluError(f"unknown sentence encoder {name!r} (choose from {', '.join(ENCODERS)})")
    _choice["encoder"] = (name, directory)
    default_encoder.cache_clear()


@functools.cache
def default_encoder() -> Encoder:
    name, directory = _choice["encoder"]
    if name == "auto":
        if mpnet_available(directory):
            return encoder_named("mpnet", directory)
        log.warning(
            "nlu.encoder_fallback",
            using="minilm",
            reason="the mpnet encoder is not built (scripts/build-intent-encoder mpnet)",
        )
        return encoder_named("minilm")
    return encoder_named(name, directory)


def bundled_encoder() -> Encoder:
    """The small encoder that always ships with the package."""
    return encoder_named("minilm")
