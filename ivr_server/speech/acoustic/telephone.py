"""The telephone-channel model at run time: which means a narrowband (8 kHz) call is heard with.

``IVR_ASR_TELEPHONE_MODEL`` chooses: ``bundled`` (the default: the adaptation shipped in
``bundled/telephone-en-us``, built by scripts/adapt-acoustic), ``off`` (the wideband model as
PocketSphinx ships it), or a directory holding an admin's own ``means`` and ``manifest.json``.
Only the means change, so PocketSphinx loads the base model with ``mean=`` pointing here. An
adaptation made for another base model (its manifest names the base means' SHA-256) is not
used: the bundled one falls back to the base model with a warning, an admin's own is an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import structlog

from ivr_server.errors import EngineUnavailable

log = structlog.get_logger(__name__)
BUNDLED = Path(__file__).resolve().parent / "bundled" / "telephone-en-us"
CHOICES = "bundled, off, or a directory with means and manifest.json"


@dataclass(frozen=True)
class TelephoneModel:
    name: str
    version: str
    means: Path

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def base_model_dir() -> Path:
    """PocketSphinx's bundled US-English model directory."""
    try:
        import pocketsphinx
    except ImportError as err:
        raise EngineUnavailable("PocketSphinx is not installed: pip install pocketsphinx") from err
    return Path(pocketsphinx.get_model_path()) / "en-us"


def telephone_model(choice: str, hmm: Path) -> TelephoneModel | None:
    """The adaptation ``choice`` names for the acoustic model in ``hmm``; None for ``off``."""
    if choice == "off":
        return None
    directory = BUNDLED if choice == "bundled" else Path(choice)
    try:
        return _load(directory, hmm)
    except EngineUnavailable as err:
        if choice != "bundled":
            raise
        log.warning("asr.telephone_model_unused", reason=str(err), using="the wideband model")
        return None


@lru_cache(maxsize=8)
def _load(directory: Path, hmm: Path) -> TelephoneModel:
    manifest_file, means = directory / "manifest.json", directory / "means"
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        name, version, base_sha = manifest["name"], manifest["version"], manifest["base"]["means_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EngineUnavailable(
            f"telephone model {directory}: no readable manifest.json ({err}); "
            f"IVR_ASR_TELEPHONE_MODEL is {CHOICES}"
        ) from err
    if not means.is_file():
        raise EngineUnavailable(f"telephone model {directory}: its means file is missing")
    try:
        actual = hashlib.sha256((hmm / "means").read_bytes()).hexdigest()
    except OSError as err:
        raise EngineUnavailable(f"the acoustic model {hmm} has no readable means: {err}") from err
    if actual != base_sha:
        raise EngineUnavailable(
            f"telephone model {directory} was adapted from another base model (means {base_sha[:12]}, "
            f"installed {actual[:12]}): rebuild it with scripts/adapt-acoustic"
        )
    return TelephoneModel(str(name), str(version), means)
