"""Brain-derived task similarity against a naive scipy cosine loop; subjects averaged; rsa linkage."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import cosine

from neurotask.stats import task_similarity


def _fit_and_significance(seed, models=("a", "b", "c", "d"), n_voxels=300):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((2, n_voxels))
    r = np.stack([base[0], base[0] + 0.3 * rng.standard_normal(n_voxels), base[1],
                  base[1] + 0.3 * rng.standard_normal(n_voxels)]).astype(np.float32)
    significant = rng.uniform(size=r.shape) < 0.6
    coords = {"model": list(models)}
    fit = xr.Dataset({"r": (("model", "voxel"), r)}, coords=coords)
    perm = xr.Dataset({"significant": (("model", "voxel"), significant)}, coords=coords)
    return fit, perm


def _naive(fit, perm):
    vectors = np.where(perm.significant.values, fit.r.values.astype(np.float64), 0.0)
    n = len(vectors)
    return np.array([[1 - cosine(vectors[i], vectors[j]) for j in range(n)] for i in range(n)])


def test_equals_naive_cosine_and_groups_planted_pairs():
    fit, perm = _fit_and_significance(0)
    sim = task_similarity(fit, perm)
    assert sim.dims == ("model", "model_")
    np.testing.assert_allclose(sim.values, _naive(fit, perm), atol=1e-12)  # float64 both
    from neurotask.rsa import linkage

    clusters = linkage(sim).clusters(2).values
    assert clusters[0] == clusters[1] != clusters[2] == clusters[3]


def test_mean_over_subjects_and_mask_dataarray():
    pairs = [_fit_and_significance(seed) for seed in (1, 2, 3)]
    sim = task_similarity(pairs)
    np.testing.assert_allclose(sim.values, np.mean([_naive(f, p) for f, p in pairs], axis=0), atol=1e-12)
    assert sim.attrs["n_subjects"] == 3
    fit, perm = pairs[0]
    np.testing.assert_allclose(task_similarity(fit, perm.significant), task_similarity(fit, perm))


def test_model_without_significant_voxels_is_nan():
    fit, perm = _fit_and_significance(4)
    perm["significant"][2] = False
    sim = task_similarity(fit, perm)
    assert np.isnan(sim.values[2]).all() and np.isfinite(sim.values[0, 1])
    with pytest.raises(TypeError, match="pairs"):
        task_similarity([fit])
