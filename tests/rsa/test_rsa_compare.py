"""Ranks and RDM comparisons (Spearman, Pearson, tau-a) against scipy, rsatoolbox and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rsatoolbox
import scipy.stats
import xarray as xr
from rsa_reference import MODELS, brute_tau_a, reference_rdms, rsatoolbox_rdms

from neurotask import rsa
from neurotask.rsa import _kernels


@pytest.mark.parametrize(
    "values",
    [
        np.round(np.random.default_rng(0).standard_normal(2000), 1),  # heavy ties
        np.random.default_rng(1).standard_normal(3001),  # no ties
        np.r_[np.zeros(4), -np.zeros(4), 5e-324 * np.arange(3), 1 + 2.2e-16 * np.arange(6), -np.arange(3.0)],
        np.full(7, 0.25),
        np.array([2.0, 1.0, 3.0]),
        5e-324 * np.random.default_rng(2).integers(0, 5, 50),  # a range of a few subnormals
        np.array([-1e308, 1e308, 0.0, 5.0, 5.0]),  # a range beyond the largest float
        1 + 2.2e-16 * np.random.default_rng(3).integers(0, 3, 1000),  # ties one ulp apart
    ],
    ids=["ties", "distinct", "signed-zero-subnormal-ulp", "all-equal", "three", "subnormal-range", "huge-range", "ulp-ties"],
)
def test_ranks_equal_rankdata(values):
    expected = 2 * scipy.stats.rankdata(values) - (values.size + 1)
    ranks = _kernels._doubled_centered_ranks(values)
    assert ranks.dtype == np.int32
    np.testing.assert_array_equal(ranks, expected)
    np.testing.assert_array_equal(_kernels._dense_ranks(values), scipy.stats.rankdata(values, method="dense"))


def test_model_similarity_spearman_equals_scipy_and_rsatoolbox(features):
    sim = rsa.model_similarity(features, progress=False)
    reference = scipy.stats.spearmanr(reference_rdms(features).T).statistic
    np.testing.assert_allclose(sim.values, reference, rtol=0, atol=1e-9)
    toolbox = rsatoolbox_rdms(features)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "spearman"), rtol=0, atol=1e-9)
    assert sim.dims == ("model", "model_") and list(sim.model_.values) == MODELS
    assert sim.attrs["compare"] == "spearman" and sim.attrs["rdm_method"] == "correlation"
    assert sim.attrs["n_images"] == 60 and sim.attrs["subset"] == "all images"


def test_model_similarity_tau_a_equals_rsatoolbox_and_brute_force(features):
    small = features.isel(image=slice(0, 30))
    sim = rsa.model_similarity(small, compare="tau-a", progress=False)
    toolbox = rsatoolbox_rdms(small)
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "tau-a"), rtol=0, atol=1e-9)
    rdms = reference_rdms(small)
    for a, b in itertools.combinations(range(len(MODELS)), 2):
        assert sim.values[a, b] == pytest.approx(brute_tau_a(rdms[a], rdms[b]), abs=1e-9)


def test_model_similarity_pearson_equals_rsatoolbox(features):
    sim = rsa.model_similarity(features, compare="pearson", rdm_method="cosine", progress=False)
    toolbox = rsatoolbox.rdm.RDMs(reference_rdms(features, "cosine"))
    np.testing.assert_allclose(sim.values, rsatoolbox.rdm.compare(toolbox, toolbox, "corr"), rtol=0, atol=1e-6)


@pytest.mark.parametrize("compare", sorted(rsa.COMPARE_METHODS))
def test_compare_rdms_with_many_ties(compare):
    """RDMs with frequent exact ties: ranks must average them, tau-a must count them as neither."""
    rng = np.random.default_rng(5)
    values = rng.integers(0, 6, size=(4, 300)).astype(np.float64)
    values[1] = values[0] + rng.integers(0, 2, 300)  # correlated with model 0
    values[3, :150] = 0.0
    rdms = xr.DataArray(values, dims=("model", "pair"), coords={"model": list("abcd")})
    sim = rsa.compare_rdms(rdms, compare).values
    if compare == "spearman":
        reference = scipy.stats.spearmanr(values.T).statistic
    elif compare == "pearson":
        reference = np.corrcoef(values)
    else:
        reference = np.array([[brute_tau_a(x, y) for y in values] for x in values])
        np.fill_diagonal(reference, 1.0)
    np.testing.assert_allclose(sim, reference, rtol=0, atol=1e-6 if compare == "pearson" else 1e-12)


def test_compare_rdms_refuses_nan():
    rdms = xr.DataArray([[0.1, np.nan, 0.3], [0.2, 0.1, 0.3]], dims=("model", "pair"), coords={"model": ["a", "b"]})
    with pytest.raises(ValueError, match="model 'a' holds NaN"):
        rsa.compare_rdms(rdms)


def test_tau_a_public_fallback_equals_fast_kernel(monkeypatch):
    """Without scipy's private discordance kernel, tau-a comes from the public tau-b, equal to 1e-12."""
    rng = np.random.default_rng(6)
    values = rng.integers(0, 8, size=(3, 400)).astype(np.float64)
    values[1] += values[0]
    rdms = xr.DataArray(values, dims=("model", "pair"), coords={"model": list("abc")})
    fast = rsa.compare_rdms(rdms, "tau-a").values
    monkeypatch.setattr(_kernels, "_kendall_dis", None)
    np.testing.assert_allclose(rsa.compare_rdms(rdms, "tau-a").values, fast, rtol=0, atol=1e-12)
    assert fast[0, 1] == pytest.approx(brute_tau_a(values[0], values[1]), abs=1e-12)
