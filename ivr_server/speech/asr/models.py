"""Downloading speech models for users who have internet: pinned URL and SHA-256, safe unzip,
then loaded once to prove it works before it is put in place."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx

from ivr_server.errors import AsrError, EngineUnavailable


@dataclass(frozen=True)
class ModelSource:
    name: str
    url: str
    sha256: str
    directory: str  # the archive's top-level directory
    about: str


CATALOG = {
    m.name: m
    for m in (
        ModelSource(
            "vosk-small-en-us",
            "https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
            "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498",
            "vosk-model-small-en-us-0.15",
            "US English, 40 MB, 9.85 % WER on LibriSpeech test-clean (Apache-2.0)",
        ),
    )
}
MAX_DOWNLOAD_BYTES = 4 * 1024**3


def fetch(source: ModelSource, models_dir: Path, *, timeout_s: float = 60.0) -> Path:
    """Download, check and unpack ``source`` into ``models_dir``; returns the model directory.
    An existing, loadable model is kept. Nothing half-done is left behind on failure."""
    target = models_dir / source.directory
    if target.is_dir():
        _check_loads(target)
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".fetch-") as tmp:
        archive = Path(tmp) / "model.zip"
        digest = _download(source.url, archive, timeout_s)
        if digest != source.sha256:
            raise AsrError(
                f"{source.url}: SHA-256 {digest} does not match the expected {source.sha256}; "
                "the download is corrupt or the file changed upstream, so it was not installed"
            )
        unpacked = Path(tmp) / "unpacked"
        _safe_unzip(archive, unpacked)
        model = unpacked / source.directory
        if not model.is_dir():
            raise AsrError(f"{source.url}: the archive has no {source.directory}/ directory")
        _check_loads(model)
        model.rename(target)  # same file system: atomic
    return target


def _download(url: str, dest: Path, timeout_s: float) -> str:
    sha = hashlib.sha256()
    size = 0
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as response:
            if response.status_code != 200:
                raise AsrError(f"{url}: HTTP {response.status_code}")
            with dest.open("wb") as fh:
                for chunk in response.iter_bytes(1 << 20):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise AsrError(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes, refused")
                    sha.update(chunk)
                    fh.write(chunk)
    except httpx.HTTPError as err:
        raise AsrError(
            f"{url}: download failed ({err}); without internet, copy the unpacked model "
            "here by hand and set IVR_ASR_VOSK_MODEL"
        ) from err
    return sha.hexdigest()


def _safe_unzip(archive: Path, dest: Path) -> None:
    """Refuses members that would land outside ``dest`` (absolute paths, ``..``, links)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                parts = PurePosixPath(member.filename).parts
                if member.filename.startswith("/") or ".." in parts or (member.external_attr >> 28) == 0xA:
                    raise AsrError(f"{archive.name}: unsafe member {member.filename!r}, refused")
            zf.extractall(dest)
    except zipfile.BadZipFile as err:
        raise AsrError(f"the download is not a zip archive ({err})") from err


def _check_loads(model: Path) -> None:
    from ivr_server.speech.asr.vosk_engine import VoskEngine

    try:
        VoskEngine(model)
    except EngineUnavailable as err:
        raise AsrError(f"{model} is not a usable Vosk model: {err}") from err


def remove_partial(models_dir: Path) -> None:
    """Leftovers of an interrupted fetch (the process was killed mid-download)."""
    for leftover in models_dir.glob(".fetch-*"):
        shutil.rmtree(leftover, ignore_errors=True)
