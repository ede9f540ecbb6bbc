"""Acceptance of ``nt.stats`` on inputs an outside user builds by hand (numpy + xarray only).

Features carry only ``model`` and ``image`` coords (float64, ids like ``img_0001``, model names
with "+" and spaces); responses only ``image`` and ``session`` on trial. References: a brute-force
per-voxel permutation loop, statsmodels' ``fdr_bh``, scipy's KS test and ground truth planted here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

import neurotask as nt


def handbuilt(
    seed: int = 0, n_images: int = 320, n_features: int = 8, n_sessions: int = 6, per_session: int = 60,
    n_signal: int = 10, n_noise: int = 10,
) -> tuple[xr.DataArray, xr.DataArray, np.ndarray]:
    """Features (models "a+b", "my model"), responses and the planted driver per voxel ('' = noise).

    Training sessions draw images with replacement (repeats across sessions); the last session
    shows new images plus 10 training images. Voxels ``[0, n_signal)`` are driven by "a+b"
    (signal share 0.4).
    """
    rng = np.random.default_rng(seed)
    images = np.array([f"img_{i:04d}" for i in range(1, n_images + 1)])
    features = xr.DataArray(rng.standard_normal((2, n_images, n_features)), dims=("model", "image", "feature"),
                            coords={"model": ["a+b", "my model"], "image": images})
    n_pool = n_images - (per_session - 10)
    train_images = rng.choice(images[:n_pool], (n_sessions - 1) * per_session)
    test_images = np.concatenate([images[n_pool:], rng.choice(np.unique(train_images), 10, replace=False)])
    order = np.concatenate([train_images, rng.permutation(test_images)])
    signal = features.sel(model="a+b", image=order).values @ rng.standard_normal((n_features, n_signal))
    signal = (signal - signal.mean(0)) / signal.std(0)
    y = rng.standard_normal((order.size, n_signal + n_noise))
    y[:, :n_signal] = np.sqrt(0.4) * signal + np.sqrt(0.6) * y[:, :n_signal]
    responses = xr.DataArray(y, dims=("trial", "voxel"), coords={
        "image": ("trial", order), "session": ("trial", np.repeat(np.arange(1, n_sessions + 1), per_session))})
    return features, responses, np.array(["a+b"] * n_signal + [""] * n_noise)


@pytest.fixture(scope="module")
def small() -> tuple[xr.DataArray, xr.DataArray, xr.Dataset]:
    features, responses, _ = handbuilt(seed=3, n_signal=6, n_noise=6)
    return features, responses, nt.encoding.fit(features, responses, progress=False)


def _brute_force_p(results: xr.Dataset, responses: xr.DataArray, n_permutations: int, seed: int,
                   statistic: str) -> np.ndarray:
    """p per (model, voxel): every voxel, every permutation, the statistic recomputed in float64.

    The permutations are DESIGN §3's: ``default_rng(seed).permutation(n_test)`` drawn in turn,
    the same for every voxel, applied to the scored test trials.
    """
    y = responses.values[results["is_test"].values].astype(np.float64)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(y.shape[0]) for _ in range(n_permutations)]

    def score(prediction: np.ndarray, observed: np.ndarray) -> float:
        if statistic == "r":
            return float(np.corrcoef(prediction, observed)[0, 1])
        return float(1 - ((observed - prediction) ** 2).sum() / ((observed - observed.mean()) ** 2).sum())

    p = np.empty(results["r2"].shape)
    for m, model in enumerate(results["model"].values):
        prediction = results["prediction"].sel(model=model).values.astype(np.float64)
        for v in range(y.shape[1]):
            observed = score(prediction[:, v], y[:, v])
            null = np.array([score(prediction[:, v], y[perm, v]) for perm in perms])
            p[m, v] = (1 + (null >= observed).sum()) / (1 + n_permutations)
    return p


@pytest.mark.parametrize("statistic", ["r", "r2"])
def test_pvalues_equal_a_brute_force_loop(small, statistic) -> None:
    # R²'s null ranks permutations as r's does; before the fix its float32 offset rounded the
    # null of nearly constant predictions (large alphas) onto the observed value
    _, responses, results = small
    perm = nt.stats.permutation_test(results, responses, n_permutations=300, seed=7, statistic=statistic)
    np.testing.assert_allclose(perm["p"].values, _brute_force_p(results, responses, 300, 7, statistic), atol=1e-6)
    np.testing.assert_allclose(perm["observed"].values, results[statistic].values, atol=1e-5)


def test_r2_and_r_nulls_give_the_same_pvalues(small) -> None:
    _, responses, results = small
    by_r, by_r2 = (nt.stats.permutation_test(results, responses, n_permutations=500, statistic=s) for s in ("r", "r2"))
    np.testing.assert_array_equal(by_r2["p"].values, by_r["p"].values)


def test_noise_pvalues_are_uniform_and_bh_controls_the_fdp() -> None:
    # BH's expected FDP here is q · 200 / 300 ≈ 0.033 (standard error of the mean ≈ 0.004)
    noise_p, fdp, power = [], [], []
    for seed in range(20):
        features, responses, driver = handbuilt(seed=seed, n_signal=100, n_noise=200)
        results = nt.encoding.fit(features, responses, ["a+b"], progress=False)
        perm = nt.stats.permutation_test(results, responses, n_permutations=500, seed=seed)
        p, significant = perm["p"].values[0], perm["significant"].values[0]
        # BH as statsmodels', on every seed
        rejected, q_values, _, _ = multipletests(p, alpha=0.05, method="fdr_bh")
        np.testing.assert_array_equal(significant, rejected)
        np.testing.assert_allclose(perm["q"].values[0], q_values, rtol=1e-6)
        noise = driver == ""
        noise_p.append(p[noise])
        fdp.append((significant & noise).sum() / max(significant.sum(), 1))
        power.append(significant[~noise].mean())
    assert scipy_stats.kstest(np.concatenate(noise_p), "uniform").pvalue > 0.01
    assert np.mean(fdp) <= 0.05, np.mean(fdp)
    assert np.mean(power) >= 0.9


def test_fdr_bh_equals_statsmodels_with_masked_voxels() -> None:
    p = np.random.default_rng(0).uniform(size=(3, 200)) ** 3
    p[:, ::17] = np.nan
    significant, q_values = nt.stats.fdr_bh(p, q=0.1)
    for row in range(3):
        finite = np.isfinite(p[row])
        rejected, expected, _, _ = multipletests(p[row, finite], alpha=0.1, method="fdr_bh")
        np.testing.assert_array_equal(significant[row, finite], rejected)
        np.testing.assert_allclose(q_values[row, finite], expected, rtol=1e-12)
        assert not significant[row, ~finite].any() and np.isnan(q_values[row, ~finite]).all()


def test_features_are_optional_and_give_the_same_pvalues(small) -> None:
    features, responses, results = small
    without = nt.stats.permutation_test(results, responses, n_permutations=200)
    given = nt.stats.permutation_test(results, responses, features, n_permutations=200)
    unkept = nt.encoding.fit(features, responses, predictions=False, progress=False)
    recomputed = nt.stats.permutation_test(unkept, responses, features, n_permutations=200)
    for other in (given, recomputed):
        np.testing.assert_array_equal(other["p"].values, without["p"].values)
    with pytest.raises(ValueError, match=r"needs the test predictions.*features=\.\.\."):
        nt.stats.permutation_test(unkept, responses, n_permutations=10)


def test_pvalues_do_not_depend_on_chunks_workers_or_backend(small) -> None:
    from distributed import Client, LocalCluster

    features, responses, results = small
    base = nt.stats.permutation_test(results, responses, n_permutations=200, seed=4)
    runs = [nt.stats.permutation_test(results, responses, n_permutations=200, seed=4, voxel_chunk=11),
            nt.stats.permutation_test(results, responses.chunk({"voxel": 7}), n_permutations=200, seed=4),
            nt.stats.permutation_test(results, responses, n_permutations=200, seed=4, backend="torch", device="cpu")]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        runs.append(nt.stats.permutation_test(results, responses, n_permutations=200, seed=4, voxel_chunk=3,
                                              client=client))
    for run in runs:
        np.testing.assert_array_equal(run["p"].values, base["p"].values)
    # torch fit and torch null together: p within one permutation count of numpy's
    on_torch = nt.encoding.fit(features, responses, backend="torch", device="cpu", progress=False)
    torch_p = nt.stats.permutation_test(on_torch, responses, n_permutations=200, seed=4, backend="torch", device="cpu")
    assert np.abs(torch_p["p"].values - base["p"].values).max() <= 1 / 201 + 1e-7
    refit = [nt.stats.permutation_test(results, responses, features, method="refit", n_permutations=20, backend=b,
                                       device="cpu") for b in ("numpy", "torch")]
    assert np.abs(refit[0]["p"].values - refit[1]["p"].values).max() <= 1 / 21 + 1e-7


def _image_effect() -> tuple[xr.DataArray, xr.DataArray]:
    """A random response per image plus noise (nothing predictable from the features); 80 random
    features for 60 images let ridge memorize training images; the test session shows 30 of them
    and 10 new ones."""
    rng = np.random.default_rng(1)
    images = np.array([f"img_{i:04d}" for i in range(60)])
    features = xr.DataArray(rng.standard_normal((1, 60, 80)), dims=("model", "image", "feature"),
                            coords={"model": ["random"], "image": images})
    order = rng.choice(50, 160)
    order = np.concatenate([order, rng.choice(np.unique(order), 30, replace=False), np.arange(50, 60)])
    y = rng.standard_normal((60, 40))[order] + 0.5 * rng.standard_normal((order.size, 40))
    return features, xr.DataArray(y, dims=("trial", "voxel"), coords={
        "image": ("trial", images[order]), "session": ("trial", np.repeat(np.arange(1, 6), 40))})


def test_the_null_leaves_out_test_trials_whose_image_was_in_training() -> None:
    features, responses = _image_effect()
    default = nt.encoding.fit(features, responses, progress=False)
    keep = nt.encoding.fit(features, responses, repeats="keep", progress=False)
    scored = default["is_test"].values
    assert scored.sum() == 10 and default.attrs["n_test_trials_dropped"] == 30
    perm = nt.stats.permutation_test(default, responses, n_permutations=200)
    y = responses.values[scored]
    prediction = default["prediction"].values[0]
    expected = [np.corrcoef(prediction[:, v], y[:, v])[0, 1] for v in range(y.shape[1])]
    np.testing.assert_allclose(perm["observed"].values[0], expected, atol=1e-5)
    assert int(perm["significant"].sum()) == 0
    # kept, the memorized training images look like signal
    assert int(nt.stats.permutation_test(keep, responses, n_permutations=200)["significant"].sum()) >= 20


def _partition_problem() -> tuple[xr.DataArray, xr.DataArray]:
    """Models "A", "B copy" (A plus 30% noise) and independent "C+x"; every voxel is driven by A
    and C equally; 5 sessions of 80 trials, each image shown once."""
    rng = np.random.default_rng(2)
    images = np.array([f"img_{i:04d}" for i in range(400)])
    a, c = rng.standard_normal((2, 400, 10))
    features = xr.DataArray(np.stack([a, a + 0.3 * rng.standard_normal(a.shape), c]),
                            dims=("model", "image", "feature"),
                            coords={"model": ["A", "B copy", "C+x"], "image": images})
    order = rng.permutation(400)
    signals = [x[order] @ rng.standard_normal((10, 60)) for x in (a, c)]
    y = sum(0.8 * s / s.std(0) for s in signals) + rng.standard_normal((400, 60))
    return features, xr.DataArray(y, dims=("trial", "voxel"), coords={
        "image": ("trial", images[order]), "session": ("trial", np.repeat(np.arange(1, 6), 80))})


def test_variance_partition_identities_shared_and_transfer() -> None:
    features, responses = _partition_problem()
    vp = nt.stats.variance_partition(features, responses, pairs=[("A", "B copy"), ("A", "C+x")],
                                     test_sessions=[5], progress=False)
    assert vp.attrs["cv_rule"] == "leave-one-session-out (4 sessions < cv=5)" and vp.attrs["cv_folds"] == 4
    assert vp["pair"].values.tolist() == ["A+B copy", "A+C+x"]
    np.testing.assert_array_equal(vp["unique_a"] + vp["shared"], vp["r2_a"])
    np.testing.assert_array_equal(vp["unique_b"] + vp["shared"], vp["r2_b"])
    np.testing.assert_allclose(vp["unique_a"] + vp["unique_b"] + vp["shared"], vp["r2_ab"], atol=1e-15)
    for name, numerator, denominator in [("transfer_a_to_b", "shared", "r2_b"), ("transfer_b_to_a", "shared", "r2_a"),
                                         ("relative_unique_a", "unique_a", "r2_ab")]:
        expected = (vp[numerator] / vp[denominator]).where(vp[denominator] > 0)
        np.testing.assert_allclose(vp[name].values, expected.values, rtol=1e-12, err_msg=name)
    copy, independent = vp.sel(pair="A+B copy"), vp.sel(pair="A+C+x")
    assert float(copy["shared_mean"]) > 5 * max(abs(float(copy["unique_a_mean"])), abs(float(copy["unique_b_mean"])))
    assert abs(float(copy["transfer_a_to_b_mean"]) - 1) < 0.15 and abs(float(copy["transfer_b_to_a_mean"]) - 1) < 0.15
    assert abs(float(independent["shared_mean"])) < 0.05
    assert float(independent["unique_a_mean"]) > 0.15 and float(independent["unique_b_mean"]) > 0.15
    with pytest.raises(ValueError, match=r"4 sessions and 4 runs, fewer than the cv=5 folds"):
        nt.stats.variance_partition(features, responses, pairs=[("A", "C+x")], test_sessions=[5], cv=5,
                                    progress=False)


def test_task_similarity_with_a_model_without_significant_voxels() -> None:
    features, responses = _partition_problem()
    results = nt.encoding.fit(features, responses, progress=False)
    significant = nt.stats.permutation_test(results, responses, n_permutations=100)["significant"].copy()
    significant.loc[{"model": "B copy"}] = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        similarity = nt.stats.task_similarity(results, significant)
    assert any("'B copy'" in str(w.message) and issubclass(w.category, RuntimeWarning) for w in caught)
    assert similarity.attrs["models_without_significant"] == ["B copy"]
    assert np.isfinite(similarity.values).all()
    np.testing.assert_array_equal(np.diag(similarity.values), 1.0)
    np.testing.assert_array_equal(similarity.sel(model="B copy").drop_sel(model_="B copy").values, 0.0)
    vectors = results["r"].where(significant, 0.0).values
    cosine = vectors[0] @ vectors[2] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[2])
    np.testing.assert_allclose(similarity.sel(model="A", model_="C+x").values, cosine, rtol=1e-6)
