"""A Piper voice cut in two, so a sentence's first audio leaves before the rest is decoded.

A Piper (VITS) graph runs text encoder, duration predictor and flow (about 40 ms for a short
sentence on one core here), then the HiFi-GAN decoder turns the latent frames into audio (about
90 ms, growing with the sentence). The decoder is convolutional: a slice of latent frames with
enough frames of context on each side decodes to exactly the samples the whole sentence gives
there. So the graph is split at the decoder's input when the voice loads, and the decoder runs
on slices: a short first one (the head the synthesizer sends at once), then longer ones.

Measured on en_US-joe-medium (tests/integration/test_tts_piper_stream.py checks it): with 12
frames of context the slices reproduce the whole-sentence output to within float rounding;
``CONTEXT_FRAMES`` keeps a margin over that.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DECODER_ENTRY = "dec/conv_pre/Conv"  # the first decoder node in graphs Piper's exporter writes
FIRST_FRAMES = 36  # about 0.42 s of audio at 22.05 kHz (256 samples a frame)
SLICE_FRAMES = 160
CONTEXT_FRAMES = 16


@dataclass
class SplitVoice:
    encoder: Any  # onnxruntime.InferenceSession: Piper's inputs -> latent frames (1, C, T)
    decoder: Any  # latent frames -> audio (1, 1, T * hop)
    latent: str  # the decoder's input name

    @classmethod
    def load(cls, model: Path, options: Any) -> SplitVoice:
        """Split ``model`` in memory; ValueError when its graph is not the shape Piper exports."""
        return cls.from_parts(*cut(model), options)

    @classmethod
    def from_parts(cls, encoder: bytes, decoder: bytes, latent: str, options: Any) -> SplitVoice:
        """Sessions for the two halves ``cut`` made (or a cache kept of them)."""
        import onnxruntime

        parts = [
            onnxruntime.InferenceSession(part, sess_options=options, providers=["CPUExecutionProvider"])
            for part in (encoder, decoder)
        ]
        return cls(parts[0], parts[1], latent)

    def audio(self, inputs: dict[str, np.ndarray]) -> Iterator[np.ndarray]:
        """One sentence (Piper's model inputs) as float audio in slices: the first FIRST_FRAMES
        long, the rest SLICE_FRAMES; joined, they are the whole-sentence output."""
        frames = self.encoder.run(None, inputs)[0]
        total = frames.shape[2]
        start, size, hop = 0, FIRST_FRAMES, 0
        while start < total:
            end = min(total, start + size)
            lo, hi = max(0, start - CONTEXT_FRAMES), min(total, end + CONTEXT_FRAMES)
            out = self.decoder.run(None, {self.latent: frames[:, :, lo:hi]})[0].reshape(-1)
            hop = hop or len(out) // (hi - lo)
            yield out[(start - lo) * hop : (end - lo) * hop]
            start, size = end, SLICE_FRAMES


def cut(model: Path) -> tuple[bytes, bytes, str]:
    """``model``'s graph as two serialized graphs, Piper's inputs to the latent frames and the
    frames to audio, and the latent's name; ValueError when the graph is not the shape Piper
    exports. Needs the onnx package (about 0.8 s to import): piper_cache.py keeps the result."""
    import onnx
    from onnx.utils import Extractor

    graph = onnx.load(str(model))
    entry = [n for n in graph.graph.node if n.name.endswith(DECODER_ENTRY)]
    if len(entry) != 1:
        raise ValueError(f"no single {DECODER_ENTRY} node: not a graph Piper's exporter wrote")
    latent = entry[0].input[0]
    audio = graph.graph.output[0].name
    extractor = Extractor(graph)
    inputs = [i.name for i in graph.graph.input]
    encoder = extractor.extract_model(inputs, [latent]).SerializeToString()
    decoder = extractor.extract_model([latent], [audio]).SerializeToString()
    return encoder, decoder, latent
