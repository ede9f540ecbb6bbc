"""nt.encoding.fit / predict / summary on labeled synthetic data with planted drivers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr
from himalaya.ridge import RidgeCV
from himalaya.scoring import r2_score as himalaya_r2
from sklearn.linear_model import Ridge
from sklearn.model_selection import PredefinedSplit

import neurotask as nt
from neurotask.encoding import fit, predict, summary

ALPHAS = np.logspace(-2, 7, 19)


@pytest.fixture(scope="module")
def fitted(planted):
    features, responses, _, _ = planted
    return fit(features, responses, progress=False)


def _himalaya_fit(x: np.ndarray, y: np.ndarray, results: xr.Dataset) -> RidgeCV:
    train = ~results.is_test.values
    folds = PredefinedSplit(results.fold.values[train])
    model = RidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=True, solver_params={"score_func": himalaya_r2})
    return model.fit(x[train], y[train])


def test_alphas_and_test_r2_match_himalaya(planted, fitted) -> None:
    features, responses, _, _ = planted
    # himalaya in float64: the exact order of the CV scores (float32 himalaya rounds its own plateaus)
    x = features.sel(model="depth_euclidean", image=responses.image).values.astype(np.float64)
    y = responses.values.astype(np.float64)
    reference = _himalaya_fit(x, y, fitted)
    ours = fitted.sel(model="depth_euclidean")
    same = np.isclose(np.asarray(reference.best_alphas_), ours.alpha.values, rtol=1e-5)
    assert same.mean() >= 0.99
    # where float32 noise flips a near-tie, the CV scores agree to 1e-5
    assert np.all(np.abs(np.asarray(reference.cv_scores_) - ours.cv_r2.values)[~same] < 1e-5)
    test = fitted.is_test.values
    expected = nt.encoding.r2_score(y[test], np.asarray(reference.predict(x[test])))
    np.testing.assert_allclose(ours.r2.values, expected, atol=1e-4)


def test_planted_drivers_are_recovered(planted, fitted) -> None:
    _, _, driver, true_r2 = planted
    r2 = fitted.r2.values
    signal = driver != ""
    winner = fitted.model.values[np.argmax(r2, axis=0)]
    assert np.mean(winner[signal] == driver[signal]) >= 0.95
    driven = np.array([r2[list(fitted.model.values).index(d), v] for v, d in enumerate(driver) if d])
    # 80 test trials: each voxel's R² has sampling error ~0.08; the mean is close to the truth
    assert abs(np.mean(driven - true_r2[signal])) < 0.06
    assert np.mean(np.abs(driven - true_r2[signal])) < 0.12
    assert np.mean(r2[:, ~signal]) <= 0.0
    assert np.median(r2[:, ~signal]) <= 0.0


def test_results_follow_contract_b(planted, fitted) -> None:
    _, responses, _, _ = planted
    for name in ("r2", "r", "alpha", "cv_r2"):
        assert fitted[name].dims == ("model", "voxel") and fitted[name].dtype == np.float32
    assert fitted.is_test.dims == ("trial",) and fitted.is_test.dtype == bool
    assert {"image", "session", "run", "i", "j", "k"} <= set(fitted.coords)
    split = json.loads(fitted.attrs["split"])
    assert split["test_sessions"] == [6] and split["n_test"] == int(fitted.is_test.sum())
    assert json.loads(fitted.attrs["alphas"]) == pytest.approx(ALPHAS.tolist())
    assert fitted.attrs["cv"] == "5" and "parameters" in fitted.attrs
    # folds are grouped by session: every training session lies in one fold
    train = ~fitted.is_test.values
    for session in np.unique(responses.session.values[train]):
        assert np.unique(fitted.fold.values[responses.session.values == session]).size == 1


@pytest.mark.parametrize("cv", [5, "gcv"])
def test_results_do_not_depend_on_voxel_chunk(planted, cv) -> None:
    features, responses, _, _ = planted
    base = fit(features, responses, ["autoencoding"], cv=cv, progress=False)
    for chunk in (7, 64):
        other = fit(features, responses.chunk({"voxel": 50}), ["autoencoding"], cv=cv, voxel_chunk=chunk,
                    progress=False)
        np.testing.assert_array_equal(other.alpha.values, base.alpha.values)
        # float32 GEMMs round differently with the chunk width: ~1e-6 relative on sums of squares
        for name in ("r2", "r", "cv_r2"):
            np.testing.assert_allclose(other[name].values, base[name].values, atol=2e-5)


@pytest.mark.cluster
def test_two_worker_cluster_gives_the_same_results(planted, fitted) -> None:
    from distributed import Client, LocalCluster

    features, responses, _, _ = planted
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            other = fit(features, responses, voxel_chunk=40, client=client, progress=False)
    np.testing.assert_array_equal(other.alpha.values, fitted.alpha.values)
    for name in ("r2", "r", "cv_r2"):  # single-threaded BLAS on chunks of 40: float32 rounding only
        np.testing.assert_allclose(other[name].values, fitted[name].values, atol=2e-5)


def test_gcv_selects_reasonable_alphas(planted, fitted) -> None:
    features, responses, driver, _ = planted
    gcv = fit(features, responses, ["autoencoding"], cv="gcv", progress=False)
    signal = driver == "autoencoding"
    kfold = fitted.r2.sel(model="autoencoding").values
    # GCV and grouped K-fold pick different alphas, but comparable test scores on signal voxels
    assert abs(gcv.r2.values[0, signal].mean() - kfold[signal].mean()) < 0.02


def test_joint_model_matches_himalaya_on_standardized_concatenation(planted) -> None:
    features, responses, driver, _ = planted
    joint = fit(features, responses, [("autoencoding", "depth_euclidean")], progress=False)
    assert list(joint.model.values) == ["autoencoding+depth_euclidean"]
    train = ~joint.is_test.values
    x = np.concatenate([features.sel(model=m, image=responses.image).values
                        for m in ("autoencoding", "depth_euclidean")], axis=1).astype(np.float64)
    x = ((x - x[train].mean(0)) / x[train].std(0)).astype(np.float32)
    reference = _himalaya_fit(x, responses.values, joint)
    same = np.isclose(np.asarray(reference.best_alphas_), joint.alpha.values[0], rtol=1e-5)
    assert same.mean() >= 0.99
    single = fit(features, responses, ["autoencoding", "depth_euclidean"], progress=False)
    signal = driver != ""
    assert joint.r2.values[0, signal].mean() > single.r2.values[:, signal].mean()


def test_test_fraction_holds_out_whole_images(planted) -> None:
    features, responses, _, _ = planted
    first = fit(features, responses, ["class_object"], test_fraction=0.2, seed=3, cv=4, progress=False)
    is_test = first.is_test.values
    images = responses.image.values
    assert not set(images[is_test]) & set(images[~is_test])
    assert abs(np.unique(images[is_test]).size - 0.2 * np.unique(images).size) <= 1
    again = fit(features, responses, ["class_object"], test_fraction=0.2, seed=3, cv=4, progress=False)
    np.testing.assert_array_equal(again.is_test.values, is_test)
    assert json.loads(first.attrs["split"])["folds"] == "session"


def test_folds_fall_back_to_runs(planted) -> None:
    features, responses, _, _ = planted
    results = fit(features, responses, ["class_object"], test_sessions=[4, 5, 6], progress=False)
    assert json.loads(results.attrs["split"])["folds"] == "run"
    key = np.char.add(responses.session.values.astype(str), responses.run.values.astype(str))
    train = ~results.is_test.values
    for group in np.unique(key[train]):
        assert np.unique(results.fold.values[key == group]).size == 1


def test_predict_matches_sklearn_with_chosen_alphas(planted, fitted) -> None:
    features, responses, _, _ = planted
    prediction = predict(fitted, features, responses.chunk({"voxel": 70}), models=["autoencoding"])
    assert prediction.dims == ("model", "trial", "voxel")
    values = prediction.values[0]
    test = fitted.is_test.values
    x = features.sel(model="autoencoding", image=responses.image).values.astype(np.float64)
    alpha = fitted.alpha.sel(model="autoencoding").values.astype(np.float64)
    reference = Ridge(alpha=alpha).fit(x[~test], responses.values[~test].astype(np.float64))
    np.testing.assert_allclose(values, reference.predict(x[test]), atol=1e-4 * np.abs(values).max())
    np.testing.assert_array_equal(prediction.image.values, responses.image.values[test])
    # the test R² recomputed from the predictions is the fitted one
    np.testing.assert_allclose(nt.encoding.r2_score(responses.values[test], values),
                               fitted.r2.sel(model="autoencoding").values, atol=1e-5)


def test_store_round_trip(planted, tmp_path) -> None:
    features, responses, _, _ = planted
    stored = fit(features, responses, ["class_object"], cv="gcv", store=tmp_path / "results.zarr", progress=False)
    again = nt.open_results(tmp_path / "results.zarr")
    np.testing.assert_array_equal(again.r2.values, stored.r2.values)
    assert again.attrs["cv"] == "gcv" and bool(again.is_test.values.any())


def test_summary_by_model_roi_and_significance(fitted) -> None:
    table = summary(fitted)
    np.testing.assert_allclose(table.loc["autoencoding", "r2"], fitted.r2.sel(model="autoencoding").mean())
    significant = fitted.r2 > 0.1
    table = summary(fitted, significant=significant)
    expected = fitted.r.sel(model="depth_euclidean").values[significant.sel(model="depth_euclidean").values].mean()
    np.testing.assert_allclose(table.loc["depth_euclidean", "r_significant"], expected, rtol=1e-6)
    with_roi = fitted.assign_coords(roi=("voxel", np.where(np.arange(fitted.sizes["voxel"]) < 60, "V1", "LOC")))
    by_roi = summary(with_roi, by=("model", "roi"))
    assert by_roi.loc[("autoencoding", "V1"), "n_voxels"] == 60
    only = summary(with_roi, roi="V1")
    np.testing.assert_allclose(only.loc["autoencoding", "r2"], by_roi.loc[("autoencoding", "V1"), "r2"])


# --------------------------------------------------------------------------------------------
# bad input names what and where


def test_nan_features_are_named(planted) -> None:
    features, responses, _, _ = planted
    broken = features.copy(deep=True)
    broken[0, 3, 5] = np.nan
    with pytest.raises(ValueError, match=rf"autoencoding.*{features.image.values[3]}"):
        fit(broken, responses, ["autoencoding"], progress=False)


def test_nan_responses_are_named(planted) -> None:
    features, responses, _, _ = planted
    broken = responses.copy(deep=True)
    broken[10, 7] = np.inf
    with pytest.raises(ValueError, match=r"NaN/inf in 1 voxels \(positions \[7\].*'i': 7"):
        fit(features, broken, ["autoencoding"], progress=False)


def test_constant_voxels_are_named(planted) -> None:
    features, responses, _, _ = planted
    broken = responses.copy(deep=True)
    broken[:, 12] = 1.0
    with pytest.raises(ValueError, match=r"constant over the training trials \(positions \[12\]"):
        fit(features, broken, ["autoencoding"], progress=False)


def test_images_without_features_are_named(planted) -> None:
    features, responses, _, _ = planted
    with pytest.raises(ValueError, match=str(features.image.values[0])):
        fit(features.isel(image=slice(1, None)), responses, ["autoencoding"], progress=False)


def test_unknown_test_session_lists_available(planted) -> None:
    features, responses, _, _ = planted
    with pytest.raises(ValueError, match=r"test_sessions \[9\].*available sessions: \[1, 2, 3, 4, 5, 6\]"):
        fit(features, responses, ["autoencoding"], test_sessions=9, progress=False)


def test_too_few_groups_for_folds(planted) -> None:
    # an explicit cv that the groups cannot honour is an error (the default cv falls back to
    # leave-one-group-out: tests/encoding/test_split.py)
    features, responses, _, _ = planted
    with pytest.raises(ValueError, match=r"1 sessions and 4 runs, fewer than the cv=5 folds"):
        fit(features, responses, ["autoencoding"], test_sessions=[2, 3, 4, 5, 6], cv=5, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cv": 1}, r"'cv' parameter of fit must be an int >= 2 or 'gcv'. Got 1"),
        ({"alphas": [1.0, -1.0]}, "positive finite"),
        ({"models": ["normal"]}, "features lacks"),
        ({"test_fraction": 0.2, "test_sessions": 6}, "not both"),
        ({"scoring": ("mse",)}, "unknown scoring"),
    ],
)
def test_bad_arguments(planted, kwargs, message) -> None:
    features, responses, _, _ = planted
    with pytest.raises(ValueError, match=message):
        fit(features, responses, **{"models": ["autoencoding"], "progress": False, **kwargs})


class _KillAtFirst:
    """Worker plugin: kill the worker's process when it starts the first task named ``prefix``."""

    def __init__(self, prefix: str, marker: str) -> None:
        self.prefix, self.marker = prefix, marker

    def transition(self, key, start, finish, **kwargs):
        name = str(key if isinstance(key, str) else key[0])
        if finish != "executing" or not name.startswith(self.prefix):
            return
        try:  # atomic: the two workers may start such tasks at once, only one may die
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(descriptor, name.encode())
        os._exit(1)


@pytest.mark.cluster
@pytest.mark.parametrize("prefix", ["_remote_fold_eigh", "_fit_block"])
def test_worker_lost_mid_fit_gives_the_same_results(planted, fitted, tmp_path, prefix) -> None:
    # in-memory features and responses: everything a lost worker held must be recomputable
    from distributed import Client, LocalCluster, WorkerPlugin

    features, responses, _, _ = planted
    plugin = type("KillAtFirst", (_KillAtFirst, WorkerPlugin), {})(prefix, str(tmp_path / "killed"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(plugin)
        other = fit(features.compute(), responses.compute(), voxel_chunk=40, client=client, progress=False)
    assert (tmp_path / "killed").exists(), "no worker was killed"
    np.testing.assert_array_equal(other.alpha.values, fitted.alpha.values)
    for name in ("r2", "r", "cv_r2"):
        np.testing.assert_allclose(other[name].values, fitted[name].values, atol=2e-5)


def test_kept_predictions_and_spaces(planted) -> None:
    features, responses, _, _ = planted
    results = fit(features, responses, ["autoencoding", ("autoencoding", "class_object")], cv="gcv", progress=False)
    assert nt.encoding.model_spaces(results) == {"autoencoding": ("autoencoding",),
                                                 "autoencoding+class_object": ("autoencoding", "class_object")}
    assert results.prediction.dims == ("model", "test_trial", "voxel") and results.prediction.dtype == np.float32
    np.testing.assert_array_equal(results.test_trial.values, np.flatnonzero(results.is_test.values))
    lazy = predict(results, features, responses).values
    np.testing.assert_allclose(results.prediction.values, lazy, atol=1e-4 * np.abs(lazy).max())
    lean = fit(features, responses, ["autoencoding"], cv="gcv", predictions=False, progress=False)
    assert "prediction" not in lean
    with pytest.raises(ValueError, match="needs the test predictions"):
        nt.stats.permutation_test(lean, responses)
