"""Variance partitioning: exact identities, noisy-copy and independent-space behaviour, ceiling, banded."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from neurotask.datasets.synthetic import make_synthetic_features
from neurotask.stats import variance_partition
from neurotask.stats.partition import PARTITION_VARIABLES


@pytest.fixture(scope="module")
def spaces(responses_factory):
    """'normal' and 'class_object' are independent (different planted groups); 'normal_copy' is a noisy copy
    of 'normal'. Voxels 0-59 are driven by 'normal', 60-79 are noise."""
    base = make_synthetic_features(["normal", "class_object"], 200, n_features=24, seed=3)
    rng = np.random.default_rng(4)
    copy = base.sel(model=["normal"]) + 0.3 * float(base.sel(model="normal").std()) * rng.standard_normal((1, 200, 24))
    features = xr.concat([base, copy.assign_coords(model=["normal_copy"], group=("model", ["3d"]))], dim="model")
    features = features.astype(np.float32)
    responses = responses_factory(features, ["normal"] * 60 + [""] * 20, n_sessions=6, trials_per_session=60,
                               snr=1.0, seed=5)
    return features, responses


def test_identities_hold_exactly(spaces, encoding_fit):
    features, responses = spaces
    vp = variance_partition(features, responses, "all", cv=3, progress=False).compute()
    assert list(vp.pair.values) == ["normal+class_object", "normal+normal_copy", "class_object+normal_copy"]
    for suffix in ("", "_mean"):
        get = lambda name: vp[name + suffix].values  # noqa: E731
        # float64 arithmetic: identities to rounding (1e-12), not to a statistical tolerance
        np.testing.assert_allclose(get("unique_a") + get("shared"), get("r2_a"), atol=1e-12)
        np.testing.assert_allclose(get("unique_b") + get("shared"), get("r2_b"), atol=1e-12)
        np.testing.assert_allclose(get("unique_a") + get("unique_b") + get("shared"), get("r2_ab"), atol=1e-12)
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(get("transfer_a_to_b"), np.where(get("r2_b") > 0, get("shared") / get("r2_b"), np.nan))
            np.testing.assert_allclose(get("transfer_b_to_a"), np.where(get("r2_a") > 0, get("shared") / get("r2_a"), np.nan))
            np.testing.assert_allclose(get("relative_unique_a"), np.where(get("r2_ab") > 0, get("unique_a") / get("r2_ab"), np.nan))
    assert set(PARTITION_VARIABLES) <= set(vp.data_vars) and vp.r2_a.dims == ("pair", "voxel")


def test_noisy_copy_shares_and_independent_does_not(spaces, encoding_fit):
    features, responses = spaces
    vp = variance_partition(features, responses, [("normal", "normal_copy"), ("normal", "class_object")], cv=3, progress=False)
    driven = vp.isel(voxel=slice(0, 60)).mean("voxel")
    copy, independent = driven.sel(pair="normal+normal_copy"), driven.sel(pair="normal+class_object")
    print(f"noisy copy: r2_a {float(copy.r2_a):.3f} shared {float(copy.shared):.3f} unique_a {float(copy.unique_a):.3f} "
          f"transfer_a_to_b {float(copy.shared / copy.r2_b):.3f}; independent: shared {float(independent.shared):.4f}")
    assert copy.shared > 3 * (copy.unique_a + copy.unique_b)
    assert 0.8 < copy.shared / copy.r2_b < 1.2
    assert abs(independent.shared) < 0.1 * independent.r2_a  # B explains nothing A does not
    assert independent.r2_a > 0.2


def test_reuses_single_fits_and_ceiling(spaces, encoding_fit):
    features, responses = spaces
    singles = encoding_fit(features, responses, cv=3, progress=False)
    ceiling = xr.DataArray(np.full(responses.sizes["voxel"], 0.5), dims="voxel")
    vp = variance_partition(features, responses, [("normal", "class_object")], results=singles, ceiling=ceiling, cv=3, progress=False)
    np.testing.assert_allclose(vp.r2_a.values[0], singles.r2.sel(model="normal").values, rtol=1e-6)
    np.testing.assert_allclose(vp.shared_normalized, vp.shared / 0.5)


def test_banded_option(spaces, encoding_fit):
    features, responses = spaces
    vp = variance_partition(features, responses, [("normal", "class_object")], banded=True, cv=3, progress=False).compute()
    driven = vp.isel(voxel=slice(0, 60)).mean("voxel").sel(pair="normal+class_object")
    # a banded fit can shrink the irrelevant space away: the joint model loses little against A alone
    assert float(driven.r2_ab) > float(driven.r2_a) - 0.05
    np.testing.assert_allclose(vp.unique_a + vp.shared, vp.r2_a, atol=1e-12)


def test_bad_pairs(spaces):
    features, responses = spaces
    with pytest.raises(ValueError, match="not in features"):
        variance_partition(features, responses, [("normal", "nope")])
    with pytest.raises(ValueError, match="'all'"):
        variance_partition(features, responses, "some")
