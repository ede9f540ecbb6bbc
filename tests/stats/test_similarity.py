"""Brain-derived task similarity against a naive scipy cosine loop; subjects averaged; rsa linkage."""

from __future__ import annotations

import json
import warnings

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


def _naive_with_zero_vectors(r, significant):
    """Cosine loop where a zero vector (no significant voxel) is 0 to the others and 1 to itself."""
    vectors = np.where(significant, np.nan_to_num(r.astype(np.float64)), 0.0)
    n = len(vectors)
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                out[i, j] = 1.0
            elif not vectors[i].any() or not vectors[j].any():
                out[i, j] = 0.0
            else:
                out[i, j] = 1 - cosine(vectors[i], vectors[j])
    return out


def _neural_taskonomy_subject(seed, *, without=("curvature",), n_voxels=2000):
    """Shaped like Neural Taskonomy's voxelwise results for one subject: the 25 Taskonomy tasks,
    test r per voxel (NaN on constant predictions), a few percent of voxels significant per task,
    and tasks (curvature in subject 1) without any significant voxel."""
    from neurotask.features.registry import TASKS

    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 4, len(TASKS))
    base = rng.standard_normal((4, n_voxels)) * 0.1
    r = (base[groups] + 0.05 * rng.standard_normal((len(TASKS), n_voxels))).astype(np.float32)
    r[:, :3] = np.nan
    significant = (r > np.nanquantile(r, 0.95)) & np.isfinite(r)
    for task in without:
        significant[list(TASKS).index(task)] = False
    coords = {"model": list(TASKS)}
    fit = xr.Dataset({"r": (("model", "voxel"), r)}, coords=coords)
    perm = xr.Dataset({"significant": (("model", "voxel"), significant)}, coords=coords)
    return fit, perm


def test_model_without_significant_voxels_is_zero_to_others_and_one_to_itself():
    from neurotask.rsa import linkage

    fit, perm = _neural_taskonomy_subject(4)
    with pytest.warns(RuntimeWarning, match=r"\['curvature'\] have no significant voxel"):
        sim = task_similarity(fit, perm)
    curvature = list(sim.model.values).index("curvature")
    assert np.isfinite(sim.values).all()
    np.testing.assert_allclose(sim.values, _naive_with_zero_vectors(fit.r.values, perm.significant.values), atol=1e-12)
    assert sim.values[curvature, curvature] == 1.0
    assert (np.delete(sim.values[curvature], curvature) == 0).all()
    assert sim.attrs["models_without_significant"] == ["curvature"]
    tree = linkage(sim)
    assert np.isfinite(tree.matrix).all() and sorted(tree.leaves) == sorted(sim.model.values)
    with pytest.raises(TypeError, match="pairs"):
        task_similarity([fit])


def test_subjects_mean_stays_finite_when_one_subject_lacks_a_model():
    from neurotask.rsa import linkage

    pairs = [_neural_taskonomy_subject(5), _neural_taskonomy_subject(6, without=()),
             _neural_taskonomy_subject(7, without=("curvature", "jigsaw"))]
    with pytest.warns(RuntimeWarning, match=r"\['curvature', 'jigsaw'\].*2 of 3 subjects"):
        sim = task_similarity(pairs)
    expected = np.mean([_naive_with_zero_vectors(f.r.values, p.significant.values) for f, p in pairs], axis=0)
    np.testing.assert_allclose(sim.values, expected, atol=1e-12)
    assert np.isfinite(sim.values).all()
    assert sim.attrs["models_without_significant"] == ["curvature", "jigsaw"]
    assert json.loads(sim.attrs["models_without_significant_by_subject"]) == [["curvature"], [], ["curvature", "jigsaw"]]
    for method in ("average", "complete", "single", "weighted"):
        assert np.isfinite(linkage(sim, method).matrix).all()


def test_every_model_significant_gives_no_warning():
    fit, perm = _fit_and_significance(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = task_similarity(fit, perm)
    assert sim.attrs["models_without_significant"] == []
