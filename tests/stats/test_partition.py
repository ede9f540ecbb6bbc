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


# --------------------------------------------------------------------------------------------
# summaries over meaningful voxels; plain arrays; folds that fit the data


def _naive_summary(vp, pair, mask_ab, mask_ba, both):
    """The summary rule as a user would compute it, voxel by voxel with numpy."""
    get = lambda name: vp[name].sel(pair=pair).values  # noqa: E731
    mean = lambda name, mask: get(name)[mask].mean() if mask.any() else np.nan  # noqa: E731
    return {
        "shared_mean": mean("shared", both), "unique_a_mean": mean("unique_a", both),
        "transfer_a_to_b_mean": mean("shared", mask_ab) / mean("r2_b", mask_ab) if mask_ab.any() else np.nan,
        "transfer_b_to_a_mean": mean("shared", mask_ba) / mean("r2_a", mask_ba) if mask_ba.any() else np.nan,
        "n_voxels_summary": both.sum(), "n_voxels_transfer_a_to_b": mask_ab.sum(),
    }


def test_summaries_over_meaningful_voxels_match_numpy(spaces, encoding_fit):
    from neurotask.stats import permutation_test

    features, responses = spaces
    singles = encoding_fit(features, responses, cv=3, progress=False)
    pairs = [("normal", "normal_copy"), ("normal", "class_object")]
    plain = variance_partition(features, responses, pairs, results=singles, cv=3, progress=False)
    perm = permutation_test(singles, responses, n_permutations=99, seed=0)
    with_perm = variance_partition(features, responses, pairs, results=singles, permutation=perm, cv=3, progress=False)
    for vp, significant in ((plain, None), (with_perm, perm.significant)):
        for pair, (a, b) in zip(vp.pair.values, pairs):
            r2_a, r2_b = vp.r2_a.sel(pair=pair).values, vp.r2_b.sel(pair=pair).values
            both = (r2_a > 0) & (r2_b > 0) if significant is None else \
                significant.sel(model=a).values & significant.sel(model=b).values
            expected = _naive_summary(vp, pair, both & (r2_b > 0), both & (r2_a > 0), both)
            for name, value in expected.items():
                np.testing.assert_allclose(vp[name].sel(pair=pair).values, value, rtol=1e-10, err_msg=name)
        assert "summary_rule" in vp.attrs
    assert "significant" in with_perm.attrs["summary_rule"] and "R²(A) > 0" in plain.attrs["summary_rule"]
    copy = with_perm.sel(pair="normal+normal_copy")
    print(f"transfer normal→copy over {int(copy.n_voxels_transfer_a_to_b)} voxels: {float(copy.transfer_a_to_b_mean):.3f}")
    assert int(copy.n_voxels_transfer_a_to_b) > 30 and np.isfinite(copy.transfer_a_to_b_mean)
    # a model without significant voxels: no voxel qualifies, NaN with a count of 0
    none = perm.copy()
    none["significant"] = none.significant.where(none.model != "class_object", False)
    vp = variance_partition(features, responses, pairs[1:], results=singles, permutation=none, cv=3, progress=False)
    assert int(vp.n_voxels_transfer_a_to_b[0]) == 0 and np.isnan(vp.transfer_a_to_b_mean[0])
    np.testing.assert_allclose(vp.shared, plain.shared.sel(pair=["normal+class_object"]))  # per-voxel values stay


def test_plain_arrays_and_a_last_session_held_out_of_five(responses_factory):
    features = make_synthetic_features(["normal", "class_object"], 160, n_features=16, seed=7)
    responses = responses_factory(features, ["normal"] * 30 + [""] * 10, n_sessions=5, trials_per_session=48, seed=8)
    features = xr.DataArray(features.values, dims=features.dims,
                            coords={"model": features.model.values, "image": features.image.values})
    responses = xr.DataArray(responses.values, dims=responses.dims,
                             coords={"image": ("trial", responses.image.values),
                                     "session": ("trial", responses.session.values)})
    vp = variance_partition(features, responses, [("normal", "class_object")], test_sessions=[5], progress=False)
    banded = variance_partition(features, responses, [("normal", "class_object")], test_sessions=[5], banded=True,
                                progress=False).compute()
    for out in (vp, banded):
        assert np.isfinite(out.r2_ab.values).all() and int(out.n_voxels_summary[0]) > 0
        assert np.isfinite(out.transfer_a_to_b_mean.values).all()
    assert float(vp.r2_a.isel(voxel=slice(0, 30)).mean()) > 0.2
    assert vp.attrs["cv_folds"] == 4 and vp.attrs["cv_rule"].startswith("leave-one-session-out")


def test_torch_backend_agrees_with_numpy(spaces, encoding_fit):
    features, responses = spaces
    pairs = [("normal", "class_object")]
    base = variance_partition(features, responses, pairs, cv=3, progress=False)
    other = variance_partition(features, responses, pairs, cv=3, progress=False, backend="torch", device="cpu")
    assert other.attrs["backend"] == "torch" and other.attrs["device"] == "cpu"
    assert base.attrs["backend"] == "numpy"
    # R² within 1e-4 (the bound; measured: 2e-7 here, no alpha flips)
    for name in ("r2_a", "r2_b", "r2_ab", "unique_a", "shared"):
        np.testing.assert_allclose(other[name].values, base[name].values, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(other.unique_a + other.shared, other.r2_a, atol=1e-12)
