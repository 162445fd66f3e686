"""The prompt cache: speech already synthesized, by what determines its samples.

A key is the text the engine was given (after the lexicon), the engine's name, version and
voice, and the sample rate of the stored audio; ``digest`` hashes them all. Entries live in an
in-memory LRU bounded by bytes and, when a directory is given, in ``<digest>.wav`` files there,
so a restart (or a second process) finds the prompts it rendered before. Files are written to a
temporary name and renamed, so a reader never sees half a file. Thread-safe: the synthesizer
looks entries up on the event loop and stores them from worker threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import wave
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from ivr_server.errors import MediaError
from ivr_server.media.audio import read_wav
from ivr_server.media.g711 import Pcm

log = structlog.get_logger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # about 35 minutes of 16 kHz speech


@dataclass(frozen=True)
class CacheKey:
    text: str
    engine: str
    version: str
    voice: str
    rate: int

    @property
    def digest(self) -> str:
        fields = [self.text, self.engine, self.version, self.voice, self.rate]
        return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()[:32]


@dataclass
class CacheStats:
    hits: int = 0
    disk_hits: int = 0  # included in hits
    misses: int = 0
    stores: int = 0
    evictions: int = 0


class PromptCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, directory: Path | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.directory = directory
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise MediaError(f"TTS cache directory {directory} cannot be created ({err})") from err
        self.stats = CacheStats()
        self._memory: OrderedDict[str, Pcm] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def memory_bytes(self) -> int:
        return self._bytes

    def get(self, key: CacheKey, *, disk: bool = True) -> Pcm | None:
        """The stored samples (read-only), or None. ``disk=False`` looks in memory only, for
        callers on the event loop; a miss is then not counted, as they ask again with disk."""
        digest = key.digest
        with self._lock:
            pcm = self._memory.get(digest)
            if pcm is not None:
                self._memory.move_to_end(digest)
                self.stats.hits += 1
                return pcm
        if not disk:
            return None
        pcm = self._read(digest, key.rate)
        with self._lock:
            if pcm is None:
                self.stats.misses += 1
                return None
            self.stats.hits += 1
            self.stats.disk_hits += 1
            self._remember(digest, pcm)
        return pcm

    def put(self, key: CacheKey, pcm: Pcm) -> Pcm:
        """Store ``pcm`` (at ``key.rate``); returns the read-only copy the cache holds."""
        stored = np.array(pcm, dtype=np.int16)
        stored.setflags(write=False)  # shared with every caller: nobody may change it
        digest = key.digest
        with self._lock:
            self.stats.stores += 1
            self._remember(digest, stored)
        self._write(digest, key.rate, stored)
        return stored

    def _remember(self, digest: str, pcm: Pcm) -> None:
        if pcm.nbytes > self.max_bytes:
            return  # larger than the whole budget: the disk copy is enough
        old = self._memory.pop(digest, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._memory[digest] = pcm
        self._bytes += pcm.nbytes
        while self._bytes > self.max_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._bytes -= evicted.nbytes
            self.stats.evictions += 1

    def _read(self, digest: str, rate: int) -> Pcm | None:
        if self.directory is None:
            return None
        path = self.directory / f"{digest}.wav"
        if not path.is_file():
            return None
        try:
            file_rate, pcm = read_wav(path)
        except MediaError as err:
            log.warning("tts.cache_unreadable", path=str(path), error=str(err))
            return None
        if file_rate != rate:
            log.warning("tts.cache_wrong_rate", path=str(path), rate=file_rate, expected=rate)
            return None
        pcm.setflags(write=False)
        return pcm

    def _write(self, digest: str, rate: int, pcm: Pcm) -> None:
        if self.directory is None:
            return
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{digest}.", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as fh, wave.open(fh, "wb") as wav:
                    wav.setnchannels(1)
                    wav.setsampwidth(2)
                    wav.setframerate(rate)
                    wav.writeframes(pcm.astype("<i2").tobytes())
                os.replace(tmp, self.directory / f"{digest}.wav")
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as err:  # a full or read-only disk costs speed, never a call
            log.warning("tts.cache_write_failed", directory=str(self.directory), error=str(err))
