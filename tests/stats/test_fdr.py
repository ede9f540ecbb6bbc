"""BH step-up FDR against statsmodels' multipletests(method="fdr_bh")."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from statsmodels.stats.multitest import multipletests

from neurotask.stats import fdr_bh


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("q", [0.01, 0.05, 0.2])
def test_fdr_bh_equals_statsmodels(seed, q):
    rng = np.random.default_rng(seed)
    # a mixture of small and uniform p-values on a permutation grid (many ties, as in practice)
    p = np.concatenate([rng.uniform(0, 0.01, 50), rng.uniform(0, 1, 450)])
    p = np.ceil(p * 1001) / 1001
    significant, q_values = fdr_bh(p, q)
    reject, corrected, _, _ = multipletests(p, alpha=q, method="fdr_bh")
    np.testing.assert_array_equal(significant, reject)
    np.testing.assert_allclose(q_values, corrected, rtol=1e-12)  # same float64 arithmetic


def test_fdr_bh_per_model_dataarray_and_nan():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.2, (3, 200))
    p[1, :20] = np.nan  # masked voxels are not tests
    da = xr.DataArray(p, dims=("model", "voxel"), coords={"model": ["a", "b", "c"]})
    significant, q_values = fdr_bh(da.transpose("voxel", "model"), 0.1)
    assert significant.dims == ("voxel", "model")
    for m in range(3):
        finite = np.isfinite(p[m])
        reject, corrected, _, _ = multipletests(p[m, finite], alpha=0.1, method="fdr_bh")
        np.testing.assert_array_equal(significant.values[:, m][finite], reject)
        np.testing.assert_allclose(q_values.values[:, m][finite], corrected, rtol=1e-12)
        assert np.isnan(q_values.values[:, m][~finite]).all() and not significant.values[:, m][~finite].any()


def test_fdr_bh_rejects_bad_level():
    with pytest.raises(ValueError, match="'q' parameter"):
        fdr_bh(np.array([0.1]), q=1.5)
