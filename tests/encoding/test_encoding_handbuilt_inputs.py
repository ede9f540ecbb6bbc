"""Acceptance of ``nt.encoding`` on inputs an outside user builds by hand (numpy + xarray only).

Features carry only ``model`` and ``image`` coords (float64, ids like ``img_0001``, model names
with "+" and spaces); responses only ``image`` and ``session`` on trial (no run, no voxel grid),
with images repeated across sessions. Every check is against an independent reference: himalaya's
``RidgeCV``, scikit-learn's ``Ridge``, a brute-force CV loop, or ground truth planted here.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from himalaya.backend import set_backend
from himalaya.ridge import RidgeCV
from himalaya.scoring import r2_score as himalaya_r2
from sklearn.linear_model import Ridge

import neurotask as nt

MODELS = ["a+b", "my model", "z"]
ALPHAS = np.logspace(-2, 7, 19)


def handbuilt(
    seed: int = 0, n_images: int = 320, n_features: int = 8, n_sessions: int = 6, per_session: int = 60,
    n_signal: int = 20, n_noise: int = 20, n_repeated_test: int = 10,
) -> tuple[xr.DataArray, xr.DataArray, np.ndarray, np.ndarray]:
    """Features, responses, the planted driver per voxel ('' = noise) and the planted R².

    Training sessions draw images with replacement from a pool (repeats within and across
    sessions); the last session shows new images plus ``n_repeated_test`` training images.
    Voxels ``[0, n_signal)`` are driven by "a+b", the next ``n_signal`` by "my model".
    """
    rng = np.random.default_rng(seed)
    images = np.array([f"img_{i:04d}" for i in range(1, n_images + 1)])
    features = xr.DataArray(rng.standard_normal((len(MODELS), n_images, n_features)),
                            dims=("model", "image", "feature"), coords={"model": MODELS, "image": images})
    n_pool = n_images - (per_session - n_repeated_test)
    train_images = rng.choice(images[:n_pool], (n_sessions - 1) * per_session)
    test_images = np.concatenate([images[n_pool:],
                                  rng.choice(np.unique(train_images), n_repeated_test, replace=False)])
    order = np.concatenate([train_images, rng.permutation(test_images)])
    driver = np.array(["a+b"] * n_signal + ["my model"] * n_signal + [""] * n_noise)
    true_r2 = np.where(driver != "", rng.uniform(0.3, 0.6, driver.size), 0.0)
    y = rng.standard_normal((order.size, driver.size))
    for model in ("a+b", "my model"):
        columns = np.flatnonzero(driver == model)
        signal = features.sel(model=model, image=order).values @ rng.standard_normal((n_features, columns.size))
        signal = (signal - signal.mean(0)) / signal.std(0)
        y[:, columns] = np.sqrt(true_r2[columns]) * signal + np.sqrt(1 - true_r2[columns]) * y[:, columns]
    responses = xr.DataArray(y, dims=("trial", "voxel"), coords={
        "image": ("trial", order), "session": ("trial", np.repeat(np.arange(1, n_sessions + 1), per_session))})
    return features, responses, driver, true_r2


@pytest.fixture(scope="module")
def problem() -> tuple[xr.DataArray, xr.DataArray, np.ndarray, np.ndarray]:
    return handbuilt()


@pytest.fixture(scope="module")
def fitted(problem) -> xr.Dataset:
    features, responses, _, _ = problem
    return nt.encoding.fit(features, responses, progress=False)


def _design(features: xr.DataArray, responses: xr.DataArray, spaces: list[str]) -> np.ndarray:
    """The trials' features looked up by image id, spaces side by side (float64)."""
    images = responses["image"].values
    return np.concatenate([features.sel(model=s, image=images).values for s in spaces], axis=1)


def _folds(results: xr.Dataset) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Training trials and the fit's folds as (training, validation) positions among them."""
    train = np.flatnonzero(results["fold"].values >= 0)
    fold = results["fold"].values[train]
    return train, [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in np.unique(fold)]


def _brute_force_cv(x: np.ndarray, y: np.ndarray, folds: list, alpha: float) -> float:
    """Mean validation R² of scikit-learn's Ridge (intercept: each fold's training means) over folds."""
    scores = []
    for train, validation in folds:
        prediction = Ridge(alpha=alpha).fit(x[train], y[train]).predict(x[validation])
        held_out = y[validation]
        scores.append(1 - ((held_out - prediction) ** 2).sum() / ((held_out - held_out.mean()) ** 2).sum())
    return float(np.mean(scores))


def _r2(y: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    return 1 - ((y - prediction) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def _compare_with_himalaya(results: xr.Dataset, model: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Assert CV ties and test R² against himalaya (float64); return where the alphas are equal."""
    set_backend("numpy", on_error="raise")
    train, folds = _folds(results)
    reference = RidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=True,
                        solver_params={"score_func": himalaya_r2}).fit(x[train], y[train])
    alpha = results["alpha"].sel(model=model).values
    same = np.isclose(alpha, reference.best_alphas_, rtol=1e-5)
    for v in np.flatnonzero(~same):  # a different alpha only where the two CV scores tie
        ours = _brute_force_cv(x[train], y[train, v], folds, float(alpha[v]))
        theirs = _brute_force_cv(x[train], y[train, v], folds, float(reference.best_alphas_[v]))
        assert abs(ours - theirs) < 1e-5, (model, v, alpha[v], reference.best_alphas_[v], ours, theirs)
    is_test = results["is_test"].values
    r2 = _r2(y[is_test], np.asarray(reference.predict(x[is_test])))
    np.testing.assert_allclose(results["r2"].sel(model=model).values[same], r2[same], atol=1e-4)
    return same


def test_model_names_with_plus_and_spaces_are_single_models(fitted) -> None:
    # "a+b" names a model of the features: it is that model, not the joint model of "a" and "b"
    assert fitted["model"].values.tolist() == MODELS
    assert nt.encoding.model_spaces(fitted) == {m: (m,) for m in MODELS}
    assert fitted.attrs["cv_rule"] == "5-fold grouped by session"


def test_split_and_folds_from_the_labels_alone(problem, fitted) -> None:
    # the test set is the last session minus its images also shown in training; each image's
    # training presentations lie in one fold; counts in attrs (computed here independently)
    _, responses, _, _ = problem
    images, session = responses["image"].values, responses["session"].values
    repeated = (session == 6) & np.isin(images, images[session != 6])
    np.testing.assert_array_equal(fitted["is_test"].values, (session == 6) & ~repeated)
    np.testing.assert_array_equal(fitted["fold"].values[repeated], -2)
    train, _ = _folds(fitted)
    assert pd.Series(fitted["fold"].values[train]).groupby(images[train]).nunique().max() == 1
    assert fitted.attrs["n_test_trials_dropped"] == int(repeated.sum()) == 10
    assert fitted.attrs["cv_folds"] == np.unique(fitted["fold"].values[train]).size == 5
    assert (fitted["run"].values == 1).all()  # run filled: one run per session


def test_alphas_and_test_r2_match_himalaya(problem, fitted) -> None:
    # Where a voxel's CV scores flatten at large alphas (here the two thirds of model × voxel
    # pairs that are noise), neighbouring alphas differ by less than float32 rounding of
    # ||t - p||²; the kernel sums the alpha-dependent part in float64 (97.2% equal before).
    features, responses, driver, _ = problem
    same = np.stack([_compare_with_himalaya(fitted, m, _design(features, responses, [m]), responses.values)
                     for m in MODELS])
    driven = driver[None, :] == np.array(MODELS)[:, None]
    assert same[driven].all()
    assert same.mean() >= 0.99


def test_joint_spaces_match_himalaya_on_the_standardized_concatenation(problem) -> None:
    features, responses, _, _ = problem
    joint = nt.encoding.fit(features, responses, [("a+b", "my model")], progress=False)
    assert joint["model"].values.tolist() == ["a+b+my model"]
    assert json.loads(str(joint["spaces"].values[0])) == ["a+b", "my model"]
    assert nt.encoding.model_spaces(joint) == {"a+b+my model": ("a+b", "my model")}
    x = _design(features, responses, ["a+b", "my model"])
    train = joint["fold"].values >= 0
    x = (x - x[train].mean(0)) / x[train].std(0)
    same = _compare_with_himalaya(joint, "a+b+my model", x, responses.values)
    assert same[:40].all() and same.mean() >= 0.99  # voxels 0-39 are driven by one of the spaces


def test_fixed_alpha_predictions_and_coefficients_match_sklearn(problem) -> None:
    features, responses, _, _ = problem
    results = nt.encoding.fit(features, responses, ["my model"], alphas=[10.0], progress=False)
    x, y = _design(features, responses, ["my model"]), responses.values
    train, is_test = results["fold"].values >= 0, results["is_test"].values
    reference = Ridge(alpha=10.0).fit(x[train], y[train])
    np.testing.assert_allclose(results["prediction"].values[0], reference.predict(x[is_test]), atol=1e-4)
    factors = nt.encoding.ridge.make_ridge_factors(x[train].astype(np.float32), x[is_test].astype(np.float32),
                                                   [0, int(train.sum())], folds=False)
    coef, intercept = nt.encoding.ridge.ridge_coefficients(factors, y[train].astype(np.float32),
                                                          np.full(y.shape[1], 10.0))
    np.testing.assert_allclose(coef, reference.coef_.T, atol=1e-4)
    np.testing.assert_allclose(intercept, reference.intercept_, atol=1e-4)


def test_planted_r2_is_recovered_and_the_driver_wins() -> None:
    features, responses, driver, true_r2 = handbuilt(seed=1, n_images=900, n_sessions=4, per_session=200)
    results = nt.encoding.fit(features, responses, progress=False)
    signal = np.flatnonzero(driver != "")
    own = results["r2"].values[[MODELS.index(driver[v]) for v in signal], signal]
    assert abs(own - true_r2[signal]).mean() < 0.07
    assert np.corrcoef(own, true_r2[signal])[0, 1] > 0.8
    winner = results["model"].values[results["r2"].argmax("model").values]
    assert (winner[signal] == driver[signal]).mean() >= 0.95
    assert np.median(results["r2"].values[:, driver == ""]) <= 0
    assert np.median(results["r2"].sel(model="z").values) <= 0  # a model that drives nothing


def test_results_do_not_depend_on_chunks_or_workers(problem, fitted) -> None:
    from distributed import Client, LocalCluster

    features, responses, _, _ = problem
    variables = ["r2", "r", "alpha", "cv_r2", "prediction"]
    runs = [nt.encoding.fit(features, responses, voxel_chunk=7, progress=False),
            nt.encoding.fit(features, responses.chunk({"voxel": 11}), progress=False)]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        runs.append(nt.encoding.fit(features, responses, voxel_chunk=13, client=client, progress=False))
    for run in runs:
        for name in variables:
            np.testing.assert_allclose(run[name].values, fitted[name].values, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("check", ["himalaya", "torch", "single-voxel chunk"])
def test_alphas_on_cv_plateaus_do_not_follow_float32_rounding(problem, fitted, check) -> None:
    features, responses, _, _ = problem
    if check == "himalaya":  # float64 himalaya: the scores' own order
        same = np.stack([_compare_with_himalaya(fitted, m, _design(features, responses, [m]), responses.values)
                         for m in MODELS])
    else:
        options = {"backend": "torch", "device": "cpu"} if check == "torch" else {"voxel_chunk": 59}
        same = nt.encoding.fit(features, responses, progress=False, **options)["alpha"].values == fitted["alpha"].values
    assert same.mean() >= (0.99 if check != "single-voxel chunk" else 1.0)


def test_alignment_is_by_image_id_not_position(problem, fitted) -> None:
    features, responses, _, _ = problem
    shuffled = features.isel(image=np.random.default_rng(3).permutation(features.sizes["image"]), model=[2, 0, 1])
    again = nt.encoding.fit(shuffled, responses, MODELS, progress=False)
    np.testing.assert_array_equal(again["alpha"].values, fitted["alpha"].values)
    np.testing.assert_allclose(again["r2"].values, fitted["r2"].values, atol=1e-6)


def test_a_zarr_the_user_wrote_gives_the_same_fit(problem, fitted, tmp_path) -> None:
    features, responses, _, _ = problem
    responses.to_dataset(name="responses").to_zarr(tmp_path / "mine.zarr")
    for opened in (xr.open_zarr(tmp_path / "mine.zarr")["responses"], nt.open_responses(tmp_path / "mine.zarr")):
        again = nt.encoding.fit(features, opened, progress=False)
        np.testing.assert_array_equal(again["alpha"].values, fitted["alpha"].values)
        np.testing.assert_allclose(again["r2"].values, fitted["r2"].values, atol=1e-6)


def test_torch_backend_on_the_cpu_matches_numpy(problem, fitted) -> None:
    features, responses, _, _ = problem
    on_torch = nt.encoding.fit(features, responses, backend="torch", device="cpu", progress=False)
    assert (on_torch.attrs["backend"], on_torch.attrs["device"]) == ("torch", "cpu")
    same = on_torch["alpha"].values == fitted["alpha"].values
    # a different alpha only on a CV plateau: scores equal to float32 rounding
    np.testing.assert_allclose(on_torch["cv_r2"].values[~same], fitted["cv_r2"].values[~same], atol=1e-5)
    np.testing.assert_allclose(on_torch["r2"].values[same], fitted["r2"].values[same], atol=1e-4)
    assert same.mean() >= 0.97


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda r: r.drop_vars("image"), ValueError, r"lacks the coordinate 'image' on dim 'trial'"),
        (lambda r: r.drop_vars("session"), ValueError, r"lacks the coordinate 'session' on dim 'trial'"),
        (lambda r: r.to_dataset(name="responses"), TypeError, r"must be an xarray.DataArray.*got Dataset"),
        (lambda r: r.values, TypeError, r"must be an xarray.DataArray.*got ndarray"),
        (lambda r: r.rename(voxel="unit"), ValueError, r"missing \['voxel'\], unexpected \['unit'\]"),
    ],
)
def test_missing_essentials_are_named(problem, edit, error, message) -> None:
    features, responses, _, _ = problem
    with pytest.raises(error, match=message):
        nt.encoding.fit(features, edit(responses), progress=False)


def test_default_cv_falls_back_to_leave_one_session_out() -> None:
    features, responses, _, _ = handbuilt(n_sessions=5)
    results = nt.encoding.fit(features, responses, test_sessions=[5], progress=False)
    assert results.attrs["cv_rule"] == "leave-one-session-out (4 sessions < cv=5)"
    assert results.attrs["cv_folds"] == 4 == np.unique(results["fold"].values[results["fold"].values >= 0]).size
    with pytest.raises(ValueError, match=r"4 sessions and 4 runs, fewer than the cv=5 folds.*leave cv unset"):
        nt.encoding.fit(features, responses, test_sessions=[5], cv=5, progress=False)


def image_effect(seed: int = 1) -> tuple[xr.DataArray, xr.DataArray]:
    """Responses that are a random effect per image plus noise: nothing generalizes to new images.

    80 random features for 60 images let ridge memorize the training images' responses. The test
    session shows 30 training images and 10 new ones.
    """
    rng = np.random.default_rng(seed)
    images = np.array([f"img_{i:04d}" for i in range(60)])
    features = xr.DataArray(rng.standard_normal((1, 60, 80)), dims=("model", "image", "feature"),
                            coords={"model": ["random"], "image": images})
    train = rng.choice(50, 160)
    test = np.concatenate([rng.choice(np.unique(train), 30, replace=False), np.arange(50, 60)])
    order = np.concatenate([train, test])
    y = rng.standard_normal((60, 40))[order] + 0.5 * rng.standard_normal((order.size, 40))
    return features, xr.DataArray(y, dims=("trial", "voxel"), coords={
        "image": ("trial", images[order]), "session": ("trial", np.repeat(np.arange(1, 6), 40))})


def test_images_on_both_sides_are_left_out_unless_kept() -> None:
    features, responses = image_effect()
    images, session = responses["image"].values, responses["session"].values
    in_both = np.isin(images, images[session == 5]) & np.isin(images, images[session < 5])
    fits = {rule: nt.encoding.fit(features, responses, repeats=rule, progress=False)
            for rule in ("drop-test", "drop-train", "keep")}
    default, drop_train, keep = fits["drop-test"], fits["drop-train"], fits["keep"]
    assert default.attrs["repeats"] == "drop-test"
    np.testing.assert_array_equal(default["is_test"].values, (session == 5) & ~in_both)
    assert default.attrs["n_test_trials_dropped"] == int((in_both & (session == 5)).sum()) == 30
    np.testing.assert_array_equal(drop_train["fold"].values == -2, in_both & (session < 5))
    assert drop_train.attrs["n_train_trials_dropped"] == int((in_both & (session < 5)).sum())
    assert drop_train["is_test"].sum() == keep["is_test"].sum() == 40
    for results in (default, drop_train):
        train = results["fold"].values >= 0
        assert pd.Series(results["fold"].values[train]).groupby(images[train]).nunique().max() == 1
    # memorized image identities count as prediction only when the same images are kept on both sides
    assert float(default["r2"].mean()) <= 0.02
    assert float(keep["r2"].mean()) > 0.2 > float(default["r2"].mean()) + 0.1
