"""Moving an acoustic model's Gaussian means towards adaptation data: MLLR, then MAP.

MLLR (Leggetter and Woodland, 1995): one affine transform ``mu' = A mu + b`` per regression
class of Gaussians and feature stream, chosen to maximize the likelihood of the adaptation data.
With diagonal covariances each row ``w_i = [A_i b_i]`` has its own closed form, from what
SphinxTrain's ``bw`` accumulates per Gaussian m (occupancy ``n_m``, occupancy-weighted sum of
observations ``s_m``) and the extended mean ``xi_m = [mu_m; 1]``:

    G_i = sum_m n_m / var_mi * xi_m xi_m^T        k_i = sum_m s_mi / var_mi * xi_m
    w_i = G_i^-1 k_i

(SphinxTrain's ``mllr_solve`` solves the same system; a test checks that both agree). A few
broad phone classes share a transform each: enough data for every one, and the shift stays a
property of the channel rather than of a speaker.

MAP (Gauvain and Lee, 1994), on the MLLR-adapted means: ``mu'' = (tau mu' + s) / (tau + n)``,
so a Gaussian moves only as far as its own data supports (``tau`` frames count as much as the
prior). Variances, mixture weights and transitions are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ivr_server.errors import ResourceError
from ivr_server.speech.acoustic.sphinx_files import Array, Counts, Gaussians

# ARPAbet phones by manner: each group shares one transform ("broad" classes).
BROAD_CLASSES: Mapping[str, frozenset[str]] = {
    "silence": frozenset({"SIL", "+NSN+", "+SPN+", "+BREATH+", "+COUGH+", "+SMACK+", "+UH+", "+UM+"}),
    "vowel": frozenset(
        ["AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"]
    ),
    "stop": frozenset(["B", "D", "G", "K", "P", "T", "CH", "JH"]),
    "fricative": frozenset(["DH", "F", "HH", "S", "SH", "TH", "V", "Z", "ZH"]),
    "sonorant": frozenset(["L", "M", "N", "NG", "R", "W", "Y"]),
}
Transforms = dict[tuple[int, int], Array]  # (class, stream) -> (veclen, veclen + 1)


def phone_classes(ci_phones: Sequence[str], scheme: str = "broad") -> list[int]:
    """The regression class of each codebook (one per context-independent phone, in the model
    definition's order): ``broad`` (the five groups above) or ``global`` (one transform)."""
    if scheme == "global":
        return [0] * len(ci_phones)
    if scheme != "broad":
        raise ResourceError(f"unknown MLLR class scheme {scheme!r} (broad or global)")
    names = list(BROAD_CLASSES)
    out = []
    for phone in ci_phones:
        found = [i for i, name in enumerate(names) if phone in BROAD_CLASSES[name]]
        if not found:
            raise ResourceError(f"phone {phone!r} of the acoustic model is in no MLLR class")
        out.append(found[0])
    return out


def solve(
    means: Gaussians, variances: Gaussians, counts: Counts, classes: Sequence[int], var_floor: float = 1e-3
) -> Transforms:
    """The maximum-likelihood transform of every (class, stream) that has data."""
    n_cb, n_feat, _ = means.shape
    if len(classes) != n_cb or counts.occupancy.shape[:2] != (n_cb, n_feat):
        raise ResourceError(
            f"MLLR: {len(classes)} classes and counts {counts.occupancy.shape} for {n_cb} codebooks"
        )
    out: Transforms = {}
    for cls in sorted(set(classes)):
        for f in range(n_feat):
            length = means.streams[0][f].shape[1]
            g = np.zeros((length, length + 1, length + 1))
            k = np.zeros((length, length + 1))
            for cb in (c for c in range(n_cb) if classes[c] == cls):
                mu = means.streams[cb][f]
                xi = np.hstack([mu, np.ones((mu.shape[0], 1))])
                inv_var = 1.0 / np.maximum(variances.streams[cb][f], var_floor)
                g += np.einsum("di,dj,dk->ijk", counts.occupancy[cb, f][:, None] * inv_var, xi, xi)
                k += np.einsum("di,dj->ij", counts.weighted_means[cb][f] * inv_var, xi)
            if not np.any(g):
                continue  # no frames of this class: its Gaussians keep their means
            out[cls, f] = np.stack([np.linalg.lstsq(g[i], k[i], rcond=None)[0] for i in range(length)])
    return out


def apply(means: Gaussians, transforms: Transforms, classes: Sequence[int]) -> Gaussians:
    """``mu' = A mu + b`` with each codebook's class transform (unchanged where none)."""
    streams = []
    for cb, per_stream in enumerate(means.streams):
        moved = []
        for f, mu in enumerate(per_stream):
            w = transforms.get((classes[cb], f))
            moved.append(mu.copy() if w is None else mu @ w[:, :-1].T + w[:, -1])
        streams.append(moved)
    return Gaussians(streams)


def map_means(means: Gaussians, counts: Counts, tau: float) -> Gaussians:
    """Each mean moved towards its own data's mean, weighted by its occupancy against ``tau``."""
    if tau <= 0:
        raise ResourceError(f"MAP tau must be positive, not {tau}")
    return Gaussians(
        [
            [
                (tau * mu + counts.weighted_means[cb][f]) / (tau + counts.occupancy[cb, f][:, None])
                for f, mu in enumerate(per_stream)
            ]  # fmt: skip
            for cb, per_stream in enumerate(means.streams)
        ]
    )
