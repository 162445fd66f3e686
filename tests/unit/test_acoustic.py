"""The acoustic adaptation's arithmetic and file formats: MLLR recovers a known transform, MAP
weighs data against its prior, Sphinx parameter files round-trip and bad ones are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivr_server.errors import ResourceError
from ivr_server.speech.acoustic import mllr
from ivr_server.speech.acoustic.sphinx_files import (
    Counts,
    Gaussians,
    read_gaussians,
    read_mixture_weights,
    write_gaussians,
    write_mixture_weights,
)


def model(
    seed: int = 0, codebooks: int = 4, streams: int = 2, density: int = 16, veclen: int = 3
) -> Gaussians:
    rng = np.random.default_rng(seed)
    return Gaussians([[rng.normal(size=(density, veclen)) for _ in range(streams)] for _ in range(codebooks)])


def counts_for(means: Gaussians, moved: Gaussians, occupancy: float = 50.0) -> Counts:
    """Accumulators as if every Gaussian saw ``occupancy`` frames averaging its ``moved`` mean."""
    n_cb, n_feat, density = means.shape
    return Counts(
        [[occupancy * moved.streams[cb][f] for f in range(n_feat)] for cb in range(n_cb)],
        np.full((n_cb, n_feat, density), occupancy),
    )


def test_mllr_recovers_the_transform_the_data_was_moved_by() -> None:
    """Data whose means are A mu + b per class: the solution is A and b, class by class."""
    means, variances = model(), model(1)
    variances = Gaussians([[np.abs(v) + 0.5 for v in cb] for cb in variances.streams])
    classes = [0, 0, 1, 1]
    rng = np.random.default_rng(7)
    truth = {(c, f): np.hstack([np.eye(3) + 0.2 * rng.normal(size=(3, 3)), rng.normal(size=(3, 1))])
             for c in (0, 1) for f in (0, 1)}  # fmt: skip
    moved = mllr.apply(means, truth, classes)
    solved = mllr.solve(means, variances, counts_for(means, moved), classes)
    for key, w in truth.items():
        np.testing.assert_allclose(solved[key], w, atol=1e-8)


def test_a_class_without_data_keeps_its_means() -> None:
    means = model()
    counts = counts_for(means, means)
    counts.occupancy[2:] = 0.0
    for cb in (2, 3):
        counts.weighted_means[cb] = [np.zeros_like(s) for s in counts.weighted_means[cb]]
    classes = [0, 0, 1, 1]
    solved = mllr.solve(means, model(1), counts, classes)
    assert (1, 0) not in solved and (0, 0) in solved
    applied = mllr.apply(means, solved, classes)
    np.testing.assert_array_equal(applied.streams[3][1], means.streams[3][1])


def test_map_weighs_the_data_mean_against_tau_frames_of_prior() -> None:
    means = model()
    target = model(5)
    counts = counts_for(means, target, occupancy=100.0)
    near_prior = mllr.map_means(means, counts, tau=1e9)
    near_data = mllr.map_means(means, counts, tau=1e-9)
    halfway = mllr.map_means(means, counts, tau=100.0)
    np.testing.assert_allclose(near_prior.streams[1][0], means.streams[1][0], atol=1e-6)
    np.testing.assert_allclose(near_data.streams[1][0], target.streams[1][0], atol=1e-6)
    np.testing.assert_allclose(halfway.streams[1][0], (means.streams[1][0] + target.streams[1][0]) / 2)
    with pytest.raises(ResourceError, match="tau"):
        mllr.map_means(means, counts, tau=0)


def test_broad_classes_cover_the_model_phones_and_name_a_stranger() -> None:
    phones = ["+NSN+", "AA", "B", "S", "M", "SIL"]
    assert mllr.phone_classes(phones) == [0, 1, 2, 3, 4, 0]
    assert mllr.phone_classes(phones, "global") == [0] * 6
    with pytest.raises(ResourceError, match="'QQ'"):
        mllr.phone_classes(["AA", "QQ"])
    with pytest.raises(ResourceError, match="scheme"):
        mllr.phone_classes(phones, "per-speaker")


def test_parameter_files_round_trip(tmp_path: Path) -> None:
    means = model()
    write_gaussians(tmp_path / "means", means)
    back = read_gaussians(tmp_path / "means")
    assert back.shape == means.shape
    np.testing.assert_allclose(back.streams[3][1], means.streams[3][1], rtol=1e-6)
    weights = np.random.default_rng(2).dirichlet(np.ones(8), size=(5, 3))
    write_mixture_weights(tmp_path / "mixw", weights)
    np.testing.assert_allclose(read_mixture_weights(tmp_path / "mixw"), weights, rtol=1e-6)
    data_start = (tmp_path / "means").read_bytes().index(b"endhdr\n") + len(b"endhdr\n")
    assert data_start % 4 == 0  # SphinxTrain and PocketSphinx read the data 4-byte aligned


def test_bad_parameter_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("not a model\n")
    with pytest.raises(ResourceError, match="text is not a Sphinx parameter file"):
        read_gaussians(tmp_path / "text")
    write_gaussians(tmp_path / "means", model())
    torn = (tmp_path / "means").read_bytes()[:-100]
    (tmp_path / "torn").write_bytes(torn)
    with pytest.raises(ResourceError, match="torn.*ends early"):
        read_gaussians(tmp_path / "torn")
    with pytest.raises(ResourceError, match="cannot read"):
        read_gaussians(tmp_path / "missing")
