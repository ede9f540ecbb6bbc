"""Permutation nulls: brute-force equality, chunking invariance, calibration, power, refit, FWER."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats as scipy_stats
from sklearn.linear_model import Ridge

from neurotask.stats import permutation_test
from neurotask.stats.permutation import _cross_products, _permutations, _refit_null, _hat_matrices


def _brute_force_p(prediction, observed, perms, statistic):
    """The per-voxel loop users write: for v, for each permutation, np.corrcoef (or R²)."""
    def score(pred, obs):
        if statistic == "r":
            return np.corrcoef(pred, obs)[0, 1]
        return 1 - ((obs - pred) ** 2).sum() / ((obs - obs.mean()) ** 2).sum()

    p = np.empty(prediction.shape[1])
    for v in range(prediction.shape[1]):
        actual = score(prediction[:, v], observed[:, v])
        null = np.array([score(prediction[:, v], observed[perm, v]) for perm in perms])
        p[v] = (1 + (null >= actual).sum()) / (1 + len(perms))
    return p


def _minimal_results(n_trials, n_test, models, n_voxels):
    is_test = np.zeros(n_trials, bool)
    is_test[-n_test:] = True
    return xr.Dataset(
        {"is_test": ("trial", is_test), "alpha": (("model", "voxel"), np.ones((len(models), n_voxels)))},
        coords={"model": models},
    )


def _noise_case(seed, n_voxels=600, n_signal=0, n_test=100, r_signal=0.45):
    """Random predictions vs responses; the first n_signal voxels carry a planted correlation."""
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal((1, n_test, n_voxels)).astype(np.float32)
    resp = rng.standard_normal((n_test, n_voxels))
    resp[:, :n_signal] = r_signal * pred[0, :, :n_signal] + np.sqrt(1 - r_signal**2) * resp[:, :n_signal]
    responses = xr.DataArray(
        resp.astype(np.float32), dims=("trial", "voxel"),
        coords={"image": ("trial", np.arange(n_test).astype(str)), "session": ("trial", np.ones(n_test, int)),
                "run": ("trial", np.ones(n_test, int)), "i": ("voxel", np.arange(n_voxels)),
                "j": ("voxel", np.zeros(n_voxels, int)), "k": ("voxel", np.zeros(n_voxels, int))},
    )
    prediction = xr.DataArray(pred, dims=("model", "trial", "voxel"), coords={"model": ["m"]})
    return _minimal_results(n_test, n_test, ["m"], n_voxels), responses, prediction


def test_cross_products_equal_naive():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 30, 2100)).astype(np.float32)  # spans two voxel sub-blocks
    b = rng.standard_normal((30, 2100)).astype(np.float32)
    perms = _permutations(30, 4, seed=1)
    naive = np.einsum("mtv,ptv->pmv", a.astype(np.float64), b.astype(np.float64)[perms])
    np.testing.assert_allclose(_cross_products(perms, a, b), naive, atol=1e-4)  # float32 sums of 30 terms


def test_the_permuted_gather_never_buffers_its_output(monkeypatch):
    # np.take(..., out=) with the default mode="raise" allocates a copy of `out` per call; on Dask
    # workers (MALLOC_TRIM_THRESHOLD_=65536) each is a fresh mmap and the kernel ran 2.6x slower
    modes = []
    real_take = np.take

    def take(*args, **kwargs):
        modes.append(kwargs.get("mode", "raise"))
        return real_take(*args, **kwargs)

    monkeypatch.setattr(np, "take", take)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 9, 5), dtype=np.float32), rng.standard_normal((9, 5), dtype=np.float32)
    perms = _permutations(9, 4, seed=0)
    got = _cross_products(perms, a, b)
    assert modes and "raise" not in modes
    np.testing.assert_allclose(got, np.einsum("mtv,ptv->pmv", a, b[perms]), rtol=1e-5, atol=1e-6)

@pytest.mark.parametrize("statistic", ["r", "r2"])
def test_p_equals_brute_force_loop(small_fit, statistic):
    features, responses, results, prediction, _ = small_fit
    perm = permutation_test(results, responses, predictions=prediction, n_permutations=99, seed=5,
                            statistic=statistic, voxel_chunk=32)
    test = responses.isel(trial=np.flatnonzero(results.is_test.values)).values.astype(np.float64)
    perms = _permutations(test.shape[0], 99, seed=5)
    for m in range(2):
        expected = _brute_force_p(prediction.values[m].astype(np.float64), test, perms, statistic)
        np.testing.assert_array_equal(perm.p.values[m], expected.astype(np.float32))
    reference = results.r if statistic == "r" else results.r2
    np.testing.assert_allclose(perm.observed, reference, atol=2e-5)  # float32 predictions


def test_identical_whatever_the_chunking(small_fit):
    _, responses, results, prediction, _ = small_fit
    runs = [
        permutation_test(results, responses, predictions=prediction, n_permutations=50, seed=3,
                         voxel_chunk=chunk, permutation_block=block, fwer=True)
        for chunk, block in [(7, 3), (120, 50), (64, 17)]
    ]
    for other in runs[1:]:
        xr.testing.assert_identical(runs[0], other)


@pytest.mark.cluster
def test_identical_on_a_distributed_client(small_fit):
    import distributed
    _, responses, results, prediction, _ = small_fit
    local = permutation_test(results, responses, predictions=prediction, n_permutations=30, seed=3)
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as client:
        remote = permutation_test(results, responses, predictions=prediction.chunk({"voxel": 16}),
                                  n_permutations=30, seed=3, client=client, permutation_block=7)
    xr.testing.assert_identical(local, remote)


def test_calibration_uniform_p_and_fdr_control():
    fdp, power = [], []
    for seed in range(8):
        results, responses, prediction = _noise_case(seed, n_voxels=1000, n_signal=100)
        perm = permutation_test(results, responses, predictions=prediction, n_permutations=499, seed=seed)
        p_null = perm.p.values[0, 100:]
        if seed == 0:  # pure-noise voxels: p uniform on its grid (discreteness 1/500 << KS critical value)
            assert scipy_stats.kstest(p_null, "uniform").pvalue > 0.01
        discoveries = perm.significant.values[0]
        fdp.append(discoveries[100:].sum() / max(discoveries.sum(), 1))
        power.append(discoveries[:100].mean())
    print(f"mean FDP {np.mean(fdp):.4f}, power at r=0.45, n_test=100: {np.mean(power):.3f}")
    assert np.mean(fdp) <= 0.05
    assert np.mean(power) > 0.9


def test_pure_noise_p_uniform_several_seeds():
    rejections = 0
    for seed in range(5):
        results, responses, prediction = _noise_case(100 + seed, n_voxels=800)
        perm = permutation_test(results, responses, predictions=prediction, n_permutations=199, seed=seed)
        rejections += scipy_stats.kstest(perm.p.values[0], "uniform").pvalue < 0.01
        assert perm.significant.sum() <= 2  # BH under the global null: P(any discovery) <= q
    assert rejections <= 1


def test_planted_voxels_detected(small_fit):
    _, responses, results, prediction, drivers = small_fit
    perm = permutation_test(results, responses, predictions=prediction, n_permutations=199, seed=0)
    own = np.stack([drivers == "normal", drivers == "class_object"])
    power = perm.significant.values[own].mean()
    false = perm.significant.values[:, drivers == ""].mean()
    print(f"power on planted voxels (snr 0.7, 60 test trials): {power:.3f}; false positives on noise: {false:.3f}")
    assert power > 0.8 and false <= 0.05


def test_fwer_against_brute_force_max(small_fit):
    _, responses, results, prediction, _ = small_fit
    perm = permutation_test(results, responses, predictions=prediction, n_permutations=40, seed=9, fwer=True)
    test = responses.isel(trial=np.flatnonzero(results.is_test.values)).values.astype(np.float64)
    perms = _permutations(test.shape[0], 40, seed=9)
    pred = prediction.values[0].astype(np.float64)
    null = np.array([[np.corrcoef(pred[:, v], test[p, v])[0, 1] for v in range(test.shape[1])] for p in perms])
    np.testing.assert_allclose(perm.null_max.values[0], null.max(1), atol=1e-5)
    assert (perm.p_fwer >= perm.p).all()
    assert set(perm.data_vars) >= {"threshold_fwer", "significant_fwer"}


def test_refit_null_equals_sklearn_refits(small_fit):
    features, responses, results, _, _ = small_fit
    is_test = results.is_test.values
    x = features.sel(model="normal", image=responses.image.values).values.astype(np.float64)
    y = responses.values.astype(np.float64)
    perms = _permutations(int((~is_test).sum()), 3, seed=4)
    hats = _hat_matrices(x[~is_test], x[is_test], np.array([10.0]), standardize=False)
    null = _refit_null(perms, hats, np.zeros(y.shape[1], np.intp), y[~is_test], y[is_test], "r")
    for p, perm in enumerate(perms):
        pred = Ridge(alpha=10.0).fit(x[~is_test], y[~is_test][perm]).predict(x[is_test])
        expected = [np.corrcoef(pred[:, v], y[is_test][:, v])[0, 1] for v in range(y.shape[1])]
        np.testing.assert_allclose(null[p, 0], expected, atol=1e-4)  # float32 hat matrix


def test_refit_method_runs_and_matches_observed(small_fit):
    features, responses, results, _, _ = small_fit
    perm = permutation_test(results, responses, features, method="refit", n_permutations=19, seed=0)
    np.testing.assert_allclose(perm.observed, results.r, atol=1e-4)
    assert perm.attrs["method"] == "refit" and perm.p.min() == pytest.approx(1 / 20)


def test_errors_name_the_argument(small_fit):
    _, responses, results, prediction, _ = small_fit
    with pytest.raises(ValueError, match="unknown method"):
        permutation_test(results, responses, predictions=prediction, method="bogus")
    with pytest.raises(ValueError, match="needs the test predictions"):
        permutation_test(results, responses)
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_test(results, responses, predictions=prediction, n_permutations=0)


def test_with_the_encoding_fit_and_predict(small_fit, encoding_fit):
    """Predictions come from nt.encoding.predict (lazy); the refit operator reproduces the fit's test r."""
    features, responses, _, _, drivers = small_fit
    fit = encoding_fit(features, responses, cv=3, progress=False)
    perm = permutation_test(fit, responses, features, n_permutations=199, seed=1)
    np.testing.assert_allclose(perm.observed, fit.r, atol=1e-4)  # float32 solvers on both sides
    refit = permutation_test(fit, responses, features, method="refit", n_permutations=9, seed=1)
    # 1e-3: at alpha = 1e7 the predictions are ~1e-7 of the responses and the fit's float32 solver
    # loses ~3e-4 in r there (our float64-built operator agrees with sklearn's Ridge to 1e-7)
    np.testing.assert_allclose(refit.observed, fit.r, atol=1e-3)
    assert perm.significant.sel(model="normal").values[drivers == "normal"].mean() > 0.8


# --------------------------------------------------------------------------------------------
# the fit keeps what the null needs; plain arrays; trials left out of the split stay out of the null


def _plain(features, responses):
    """As users bring them: features with model/image coords, responses with image/session on trial."""
    features = xr.DataArray(features.values, dims=features.dims,
                            coords={"model": features.model.values, "image": features.image.values})
    responses = xr.DataArray(responses.values, dims=responses.dims,
                             coords={"image": ("trial", responses.image.values),
                                     "session": ("trial", responses.session.values)})
    return features, responses


def test_without_features_from_the_kept_predictions(small_fit, tmp_path):
    import neurotask as nt

    features, responses, _, _, drivers = _plain(*small_fit[:2]) + small_fit[2:]
    fit = nt.encoding.fit(features, responses, cv=3, progress=False, store=tmp_path / "fit.zarr")
    perm = permutation_test(fit, responses, n_permutations=199, seed=1)
    np.testing.assert_allclose(perm.observed, fit.r, atol=1e-5)
    # the same null from the features: predictions recomputed by nt.encoding.predict
    again = permutation_test(fit.drop_vars("prediction"), responses, features, n_permutations=199, seed=1)
    # float32 solvers summing in another order: ~1e-5 in r where alpha is large and predictions tiny
    np.testing.assert_allclose(again.observed, perm.observed, atol=1e-4)
    assert (again.p.values == perm.p.values).mean() >= 0.99  # float32 rounding may flip a near-tie
    assert np.abs(again.p.values - perm.p.values).max() <= 2 / 200
    # the brute-force loop over the stored predictions
    test = responses.values[fit.is_test.values].astype(np.float64)
    expected = _brute_force_p(fit.prediction.values[0].astype(np.float64), test,
                              _permutations(test.shape[0], 199, seed=1), "r")
    np.testing.assert_array_equal(perm.p.values[0], expected.astype(np.float32))
    assert perm.significant.sel(model="normal").values[drivers == "normal"].mean() > 0.8


def test_trials_left_out_of_the_split_are_left_out_of_the_null(small_fit):
    import neurotask as nt

    features, responses = _plain(*small_fit[:2])
    images = responses.image.values.copy()
    test = np.flatnonzero(responses.session.values == 4)
    images[test[:15]] = images[:15]  # 15 test trials show training images
    responses = responses.assign_coords(image=("trial", images))
    fit = nt.encoding.fit(features, responses, cv=3, progress=False)
    kept = fit.is_test.values
    assert kept.sum() == test.size - 15 and fit.attrs["n_test_trials_dropped"] == 15
    perm = permutation_test(fit, responses, n_permutations=99, seed=2)
    y = responses.values[kept].astype(np.float64)
    for m in range(2):
        expected = _brute_force_p(fit.prediction.values[m].astype(np.float64), y, _permutations(kept.sum(), 99, 2),
                                  "r")
        np.testing.assert_array_equal(perm.p.values[m], expected.astype(np.float32))
    refit = permutation_test(fit, responses, features, method="refit", n_permutations=9, seed=2)
    np.testing.assert_allclose(refit.observed, fit.r, atol=1e-3)  # the refit uses the fit's training trials only


def test_joint_model_spaces_drive_the_refit(small_fit):
    import neurotask as nt

    features, responses = _plain(*small_fit[:2])
    fit = nt.encoding.fit(features, responses, [("normal", "class_object")], cv=3, progress=False)
    assert nt.encoding.model_spaces(fit) == {"normal+class_object": ("normal", "class_object")}
    refit = permutation_test(fit, responses, features, method="refit", n_permutations=9, seed=0)
    np.testing.assert_allclose(refit.observed, fit.r, atol=1e-3)


# --------------------------------------------------------------------------------------------
# the torch backend (CPU torch here)


def test_torch_cross_products_equal_numpy_bit_for_bit():
    from neurotask.stats.permutation_torch import shuffle_counts

    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 30, 300)).astype(np.float32)
    b = rng.standard_normal((30, 300)).astype(np.float32)
    perms = _permutations(30, 9, seed=1)
    observed, exceed, maxima = shuffle_counts(perms, a, b, np.zeros((2, 300), np.float32), "r", 4, True, "cpu")
    cross = _cross_products(perms, a, b)  # the numpy kernel: the same sums in the same order
    naive = _cross_products(np.arange(30)[None], a, b)[0]
    np.testing.assert_array_equal(observed, naive)
    np.testing.assert_array_equal(exceed, (cross >= naive[None]).sum(axis=0))
    np.testing.assert_array_equal(maxima, cross.max(axis=2))


@pytest.mark.parametrize("statistic", ["r", "r2"])
def test_torch_p_values_equal_numpy_and_brute_force(small_fit, statistic):
    _, responses, results, prediction, _ = small_fit
    base = permutation_test(results, responses, predictions=prediction, n_permutations=99, seed=2,
                            statistic=statistic, fwer=True)
    runs = [permutation_test(results, responses, predictions=prediction, n_permutations=99, seed=2,
                             statistic=statistic, fwer=True, backend="torch", device="cpu", voxel_chunk=chunk,
                             permutation_block=block) for chunk, block in [(None, None), (7, 5)]]
    # acceptance: within 1/(n_permutations + 1); the kernel sums in numpy's order, so they are equal
    for other in runs:
        assert other.attrs["backend"] == "torch" and other.attrs["device"] == "cpu"
        assert np.nanmax(np.abs(other.p.values - base.p.values)) <= 1 / 100
        np.testing.assert_array_equal(other.p.values, base.p.values)
        np.testing.assert_array_equal(other.null_max.values, base.null_max.values)
    xr.testing.assert_identical(runs[0].drop_attrs(), runs[1].drop_attrs())
    # and against the per-voxel loop, on the first model
    test = results.is_test.values
    perms = _permutations(int(test.sum()), 99, seed=2)
    brute = _brute_force_p(prediction.values[0], responses.values[test], perms, statistic)
    np.testing.assert_allclose(runs[0].p.values[0], brute, atol=1 / 100)


def test_torch_backend_errors(small_fit):
    _, responses, results, prediction, _ = small_fit
    with pytest.raises(ValueError, match="'backend' parameter of permutation_test"):
        permutation_test(results, responses, predictions=prediction, backend="cupy")
    with pytest.raises(ValueError, match="backend='numpy' runs on the CPU"):
        permutation_test(results, responses, predictions=prediction, device="cuda")


@pytest.mark.parametrize("statistic", ["r", "r2"])
def test_torch_refit_null_agrees_with_numpy(small_fit, statistic):
    features, responses, results, _, _ = small_fit
    options = {"method": "refit", "n_permutations": 49, "seed": 1, "statistic": statistic, "fwer": True}
    base = permutation_test(results, responses, features, **options)
    other = permutation_test(results, responses, features, backend="torch", device="cpu", voxel_chunk=32, **options)
    assert other.attrs["backend"] == "torch"
    np.testing.assert_allclose(other.observed.values, base.observed.values, atol=1e-5)
    # GEMMs of another library: a null within float32 rounding of the observed value may flip
    assert np.nanmax(np.abs(other.p.values - base.p.values)) <= 1 / 50
    assert np.mean(other.p.values == base.p.values) >= 0.95
    np.testing.assert_allclose(other.null_max.values, base.null_max.values, atol=1e-5)


@pytest.mark.cluster
def test_torch_tasks_ask_for_the_gpu_worker(small_fit):
    from distributed import Client, Scheduler, SpecCluster, Worker, get_task_stream

    _, responses, results, prediction, _ = small_fit
    local = permutation_test(results, responses, predictions=prediction, n_permutations=30, seed=3)
    workers = {"cpu": {"cls": Worker, "options": {"nthreads": 1}},
               "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}}}
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2)
        gpu = next(a for a, w in client.scheduler_info()["workers"].items() if w["resources"].get("GPU"))
        with get_task_stream(client) as stream:
            remote = permutation_test(results, responses, predictions=prediction, n_permutations=30, seed=3,
                                      client=client, voxel_chunk=16, backend="torch", device="cpu")
        ran = [task["worker"] for task in stream.data if "_shuffle_task" in str(task["key"])]
    assert len(ran) == -(-responses.sizes["voxel"] // 16) and set(ran) == {gpu}
    np.testing.assert_array_equal(remote.p.values, local.p.values)
