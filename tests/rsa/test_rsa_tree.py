"""rsa.linkage against scipy, planted groups, undefined similarity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.cluster.hierarchy as sch
import scipy.spatial.distance as ssd
import xarray as xr
from rsa_reference import MODELS

from neurotask import rsa
from neurotask.datasets import make_synthetic_features


def test_dendrogram_recovers_planted_groups():
    feats = make_synthetic_features(images=120, n_features=96, seed=2)  # 25 tasks, TASKONOMY_GROUPS
    tree = rsa.linkage(rsa.model_similarity(feats, progress=False))
    groups = feats.group.values
    clusters = tree.clusters(len(set(groups))).sel(model=feats.model).values
    planted = {frozenset(np.flatnonzero(groups == g)) for g in set(groups)}
    found = {frozenset(np.flatnonzero(clusters == c)) for c in set(clusters)}
    assert found == planted


def test_linkage_equals_scipy_average_on_one_minus_similarity(features):
    sim = rsa.model_similarity(features, progress=False)
    tree = rsa.linkage(sim)

    reference = sch.linkage(ssd.squareform(1 - sim.values, checks=False), "average")
    np.testing.assert_allclose(tree.matrix, reference, atol=1e-12)
    assert list(tree.order) == list(sch.leaves_list(reference))
    assert tree.leaves == [MODELS[i] for i in tree.order] and tree.labels == MODELS
    with pytest.raises(ValueError, match="unknown method"):
        rsa.linkage(sim, method="ward")


def test_linkage_treats_undefined_similarity_as_unrelated():
    """A NaN row (a model whose score vector is zero, in results written before issue 13) is
    clustered as similarity 0 to the others and 1 to itself, with a warning naming it."""

    values = np.array([[1, .8, np.nan, .1], [.8, 1, np.nan, .2], [np.nan] * 4, [.1, .2, np.nan, 1]])
    names = ["a", "b", "curvature", "d"]
    sim = xr.DataArray(values, dims=("model", "model_"), coords={"model": names, "model_": names})
    with pytest.warns(RuntimeWarning, match=r"undefined \(NaN\) for models \['curvature'\]"):
        tree = rsa.linkage(sim)
    filled = np.nan_to_num(values)
    np.fill_diagonal(filled, 1.0)
    reference = sch.linkage(ssd.squareform(1 - filled, checks=False), "average")
    np.testing.assert_allclose(tree.matrix, reference, atol=1e-12)
    assert np.isfinite(tree.matrix).all()
    assert 2 in tree.matrix[-1, :2] and tree.matrix[-1, 2] == 1.0  # curvature joins last, at distance 1
    with pytest.raises(ValueError, match="finite and symmetric"):
        rsa.linkage(sim.fillna(0.0).where(sim.model != "a", np.inf))
