"""The binary parameter files of Sphinx acoustic models, as numpy arrays.

PocketSphinx and SphinxTrain share one layout: a text header (``s3``, ``key value`` lines,
``endhdr``, padded to 4 bytes), the byte-order mark 0x11223344, then dimensions and float32
data. Read here: Gaussian parameters (``means``, ``variances``), mixture weights, SphinxTrain's
Gaussian accumulators (``gauden_counts``, written by ``bw``) and feature files (``.mfc``);
written: Gaussian parameters and mixture weights. PocketSphinx's own ``sendump`` (the mixture
weights quantized to 8-bit logs, all the pip model ships) is decoded back to mixture weights,
which ``bw`` needs. Little-endian files only (what every model here is).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from ivr_server.errors import ResourceError

Array = npt.NDArray[np.float64]
MAGIC = 0x11223344
SENDUMP_LOG_BASE = 1.0001**1024  # PocketSphinx's 8-bit mixture weights: logs in this base


@dataclass
class Gaussians:
    """Per codebook, per feature stream: a (density, veclen) array (means or variances)."""

    streams: list[list[Array]]

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.streams), len(self.streams[0]), self.streams[0][0].shape[0]


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as err:
            raise ResourceError(f"cannot read {path}: {err}") from err
        self.pos = 0

    def header(self) -> dict[str, str]:
        if not self.data.startswith(b"s3\n") or b"endhdr\n" not in self.data[:4096]:
            raise ResourceError(f"{self.path} is not a Sphinx parameter file (no s3 header)")
        end = self.data.index(b"endhdr\n") + len(b"endhdr\n")
        lines = self.data[3 : end - 7].decode("ascii", "replace").splitlines()
        attrs = dict(line.strip().split(" ", 1) for line in lines if " " in line.strip())
        self.pos = end
        if self.ints(1)[0] != MAGIC:
            raise ResourceError(f"{self.path}: byte order mark missing (a big-endian or torn file)")
        return attrs

    def ints(self, n: int) -> tuple[int, ...]:
        if self.pos + 4 * n > len(self.data):
            raise ResourceError(f"{self.path} ends early (torn?)")
        values = struct.unpack_from(f"<{n}I", self.data, self.pos)
        self.pos += 4 * n
        return values

    def floats(self, n: int) -> Array:
        if self.pos + 4 * n > len(self.data):
            raise ResourceError(f"{self.path} ends early: {n} values announced")
        out = np.frombuffer(self.data, "<f4", n, self.pos).astype(np.float64)
        self.pos += 4 * n
        return out


def _split(flat: Array, n_cb: int, veclen: tuple[int, ...], n_density: int) -> list[list[Array]]:
    out, pos = [], 0
    for _ in range(n_cb):
        streams = []
        for length in veclen:
            size = n_density * length
            streams.append(flat[pos : pos + size].reshape(n_density, length))
            pos += size
        out.append(streams)
    return out


def read_gaussians(path: Path) -> Gaussians:
    r = _Reader(path)
    r.header()
    n_cb, n_feat, n_density = r.ints(3)
    veclen = r.ints(n_feat)
    (count,) = r.ints(1)
    if count != n_cb * n_density * sum(veclen):
        raise ResourceError(f"{path}: {count} values for {n_cb}x{n_density}x{sum(veclen)}")
    return Gaussians(_split(r.floats(count), n_cb, veclen, n_density))


def write_gaussians(path: Path, gaussians: Gaussians) -> None:
    n_cb, n_feat, n_density = gaussians.shape
    veclen = [s.shape[1] for s in gaussians.streams[0]]
    flat = np.concatenate([s.ravel() for cb in gaussians.streams for s in cb]).astype("<f4")
    with path.open("wb") as fh:
        _write_header(fh)
        fh.write(struct.pack("<3I", n_cb, n_feat, n_density))
        fh.write(struct.pack(f"<{n_feat}I", *veclen))
        fh.write(struct.pack("<I", flat.size))
        fh.write(flat.tobytes())


def write_mixture_weights(path: Path, weights: Array) -> None:
    """``weights``: (senone, stream, density), each row summing to one."""
    with path.open("wb") as fh:
        _write_header(fh)
        fh.write(struct.pack("<4I", *weights.shape, weights.size))
        fh.write(weights.astype("<f4").tobytes())


def read_mixture_weights(path: Path) -> Array:
    r = _Reader(path)
    r.header()
    n_sen, n_feat, n_density, count = r.ints(4)
    if count != n_sen * n_feat * n_density:
        raise ResourceError(f"{path}: {count} values for {n_sen}x{n_feat}x{n_density}")
    return r.floats(count).reshape(n_sen, n_feat, n_density)


@dataclass
class Counts:
    """``bw``'s Gaussian accumulators: per codebook and stream, the occupancy-weighted sum of
    the observations (``weighted_means``, density x veclen) and the occupancy (``occupancy``,
    codebook x stream x density)."""

    weighted_means: list[list[Array]]
    occupancy: Array


def read_counts(path: Path) -> Counts:
    r = _Reader(path)
    r.header()
    has_mean, has_var, _pass2var, n_cb, n_density, n_feat = r.ints(6)
    veclen = r.ints(n_feat)
    size = n_cb * n_density * sum(veclen)
    if not has_mean:
        raise ResourceError(f"{path} holds no mean accumulators (bw was run without them)")
    (count,) = r.ints(1)
    if count != size:
        raise ResourceError(f"{path}: {count} mean accumulators for {size}")
    means = _split(r.floats(count), n_cb, veclen, n_density)
    if has_var:
        (count,) = r.ints(1)
        r.floats(count)  # variance accumulators: not used (only means are adapted)
    d1, d2, d3, count = r.ints(4)
    return Counts(means, r.floats(count).reshape(d1, d2, d3))


def read_sendump(path: Path) -> Array:
    """PocketSphinx's quantized mixture weights back as (senone, stream, density) weights,
    each row renormalized (quantization loses ~5 % of the mass)."""
    data = path.read_bytes() if path.is_file() else b""
    pos = 0

    def int32() -> int:
        nonlocal pos
        if pos + 4 > len(data):
            raise ResourceError(f"{path} ends early or is missing")
        (value,) = struct.unpack_from("<i", data, pos)
        pos += 4
        return int(value)

    header: dict[str, str] = {}
    for _ in range(2):  # title and format description
        length = int32()
        pos += length
    while length := int32():
        key, _, value = data[pos : pos + length].rstrip(b"\0").decode("ascii", "replace").partition(" ")
        header[key] = value
        pos += length
    if int(header.get("cluster_count", "0")) != 0:
        raise ResourceError(f"{path}: clustered (4-bit) mixture weights are not supported")
    n_feat = int(header.get("feature_count", "1"))
    n_density, n_sen = int32(), int32()
    size = n_feat * n_density * n_sen
    if pos + size > len(data):
        raise ResourceError(f"{path} ends early: {n_feat}x{n_density}x{n_sen} weights announced")
    quantized = np.frombuffer(data, np.uint8, size, pos).reshape(n_feat, n_density, n_sen)
    weights = SENDUMP_LOG_BASE ** (-quantized.astype(np.float64))
    weights = np.transpose(weights, (2, 0, 1))
    normalized: Array = weights / weights.sum(axis=2, keepdims=True)
    return normalized


def read_mfc(path: Path, ceplen: int = 13) -> Array:
    """A feature file of ``sphinx_fe``: int32 count, then float32 cepstra (frames x ceplen)."""
    data = path.read_bytes()
    (count,) = struct.unpack_from("<i", data, 0)
    return np.frombuffer(data, "<f4", count, 4).astype(np.float64).reshape(-1, ceplen)


def _write_header(fh: BinaryIO) -> None:
    fh.write(b"s3\nversion 1.0\n")
    pad = (4 - (fh.tell() + len(b"endhdr\n")) % 4) % 4  # the data starts on a 4-byte boundary
    fh.write(b" " * pad + b"endhdr\n")
    fh.write(struct.pack("<I", MAGIC))
