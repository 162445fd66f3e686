"""What loading a Piper voice derives from its file, kept on disk so the next start skips it.

Cutting the graph in two (piper_stream.cut: the onnx package, about 0.8 s to import, and a pass
over the graph) and the voice's loudness gain (a few calibration sentences synthesized, about
0.5 s) took over a second of every start, on the path to ready. Both depend only on the voice
file and the software that derived them, which the key names: a new voice, Piper, onnx or
onnxruntime derives again. An entry is written whole or not at all (a directory renamed into
place); one that does not read back whole is derived again, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

FORMAT = 1  # bump when what is kept, or how it is derived, changes


@dataclass(frozen=True)
class Derived:
    encoder: bytes  # piper_stream.cut's halves, serialized graphs
    decoder: bytes
    latent: str
    gain: float


def key(fingerprint: str, speaker: int | None, calibration: tuple[str, ...], volume: float) -> str:
    """The entry's name: the voice file and everything the cut and the gain depend on."""
    versions = [_version(p) for p in ("piper-tts", "onnx", "onnxruntime")]
    text = json.dumps([FORMAT, fingerprint, speaker, calibration, volume, versions])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read(cache_dir: Path, name: str) -> Derived | None:
    entry = cache_dir / "piper" / name
    try:
        meta = json.loads((entry / "voice.json").read_text(encoding="utf-8"))
        encoder, decoder = (entry / "encoder.onnx").read_bytes(), (entry / "decoder.onnx").read_bytes()
        sizes = (len(encoder), len(decoder))
        if sizes != (meta["encoder_bytes"], meta["decoder_bytes"]):
            raise ValueError(f"graph sizes {sizes} are not the recorded ones")
        return Derived(encoder, decoder, str(meta["latent"]), float(meta["gain"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("tts.piper_cache_unreadable", entry=str(entry), error=str(err), using="derived again")
        shutil.rmtree(entry, ignore_errors=True)  # so the entry derived now can take its place
        return None


def write(cache_dir: Path, name: str, derived: Derived) -> None:
    """Best effort: a cache that cannot be written costs the next start a second, nothing else."""
    root = cache_dir / "piper"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from the admin's other accounts (the CLI)
        (tmp / "encoder.onnx").write_bytes(derived.encoder)
        (tmp / "decoder.onnx").write_bytes(derived.decoder)
        meta = {"latent": derived.latent, "gain": derived.gain,
                "encoder_bytes": len(derived.encoder), "decoder_bytes": len(derived.decoder)}  # fmt: skip
        (tmp / "voice.json").write_text(json.dumps(meta), encoding="utf-8")
        try:
            os.rename(tmp, root / name)
        except OSError:  # another process got there first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as err:
        log.warning("tts.piper_cache_unwritable", dir=str(root), error=str(err))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"
