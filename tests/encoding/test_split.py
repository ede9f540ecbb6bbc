"""Splits that fit the data: leave-one-group-out under the default cv, no image on both sides of a split.

Inputs are hand-built arrays with only the essential labels (features: model/image coords;
responses: image/session on trial; no run, no i/j/k, no source), as users bring them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from himalaya.ridge import RidgeCV
from himalaya.scoring import r2_score as himalaya_r2
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

import neurotask as nt
from neurotask.encoding import fit
from neurotask.encoding.split import make_split


def _features(n_images: int, n_features: int, seed: int, models=("m",)) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    return xr.DataArray(
        rng.standard_normal((len(models), n_images, n_features)).astype(np.float32),
        dims=("model", "image", "feature"),
        coords={"model": list(models), "image": [f"img{i:03d}" for i in range(n_images)]},
    )


def _responses(values: np.ndarray, images: np.ndarray, sessions: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values.astype(np.float32), dims=("trial", "voxel"),
                        coords={"image": ("trial", images), "session": ("trial", sessions)})


def _linear_problem(n_sessions: int = 5, per_session: int = 60, n_voxels: int = 30, seed: int = 0):
    """Every image shown once; voxels a noisy linear map of the features."""
    features = _features(n_sessions * per_session, 12, seed)
    rng = np.random.default_rng(seed + 1)
    x = features.values[0].astype(np.float64)
    y = x @ rng.standard_normal((12, n_voxels)) + 2 * rng.standard_normal((x.shape[0], n_voxels))
    sessions = np.repeat(np.arange(1, n_sessions + 1), per_session)
    return features, _responses(y, features.image.values, sessions)


def _image_effect_problem(seed: int = 0):
    """Responses carry only an image-specific effect: nothing features can predict for a new image.

    120 images in 6 sessions of 40 trials: 110 images in the first five (90 shown twice, in any
    sessions); the last session repeats 30 of them and shows 10 new ones. 200 random features per
    image: ridge can memorize the 110 training images.
    """
    rng = np.random.default_rng(seed)
    features = _features(120, 200, seed)
    images = features.image.values
    # training images repeated across sessions (as BOLD5000's are): CV with repeats kept rewards memorizing
    train_images = rng.permutation(np.concatenate([images[:110], rng.choice(images[:110], 90)]))
    test_images = np.concatenate([rng.choice(images[:110][np.isin(images[:110], train_images)], 30, replace=False),
                                  images[110:]])
    trial_images = np.concatenate([train_images, test_images])
    effect = rng.standard_normal((120, 40))
    index = np.searchsorted(images, trial_images)
    y = effect[index] + 0.5 * rng.standard_normal((index.size, 40))
    return features, _responses(y, trial_images, np.repeat(np.arange(1, 7), 40))


# --------------------------------------------------------------------------------------------
# item 6: folds that fit the data


def test_default_cv_with_fewer_sessions_is_leave_one_session_out_like_himalaya() -> None:
    features, responses = _linear_problem()
    results = fit(features, responses, test_sessions=[5], progress=False)
    assert results.attrs["cv_folds"] == 4 and results.attrs["cv_rule"].startswith("leave-one-session-out")
    train = results.fold.values >= 0
    sessions = responses.session.values
    for session in range(1, 5):  # one fold per training session
        assert np.unique(results.fold.values[sessions == session]).size == 1
    assert np.unique(results.fold.values[train]).size == 4
    x, y = features.values[0], responses.values
    folds = list(LeaveOneGroupOut().split(x[train], groups=sessions[train]))
    reference = RidgeCV(alphas=np.logspace(-2, 7, 19), cv=folds, fit_intercept=True,
                        solver_params={"score_func": himalaya_r2}).fit(x[train], y[train])
    same = np.isclose(np.asarray(reference.best_alphas_), results.alpha.values[0], rtol=1e-5)
    assert same.mean() >= 0.95
    test = results.is_test.values
    np.testing.assert_allclose(results.r2.values[0][same],
                               nt.encoding.r2_score(y[test], np.asarray(reference.predict(x[test])))[same], atol=1e-4)


def test_explicit_cv_that_cannot_be_honoured_is_an_error() -> None:
    features, responses = _linear_problem()
    with pytest.raises(ValueError, match=r"4 sessions and 4 runs, fewer than the cv=5 folds"):
        fit(features, responses, test_sessions=[5], cv=5, progress=False)


def test_one_training_group_cannot_be_cross_validated() -> None:
    features, responses = _linear_problem(n_sessions=2)
    with pytest.raises(ValueError, match=r"1 sessions and 1 runs.*cv='gcv'"):
        fit(features, responses, progress=False)


def test_missing_session_is_named() -> None:
    features, responses = _linear_problem()
    with pytest.raises(ValueError, match="session"):
        fit(features, responses.drop_vars("session"), progress=False)


# --------------------------------------------------------------------------------------------
# item 8: no image on both sides of a split


def test_image_only_effect_scores_nothing_by_default() -> None:
    features, responses = _image_effect_problem()
    kept = fit(features, responses, repeats="keep", progress=False)
    default = fit(features, responses, progress=False)
    drop_train = fit(features, responses, repeats="drop-train", progress=False)
    print(f"mean test R² with repeats kept {float(kept.r2.mean()):.3f}, drop-test {float(default.r2.mean()):.3f}, "
          f"drop-train {float(drop_train.r2.mean()):.3f}")
    assert float(kept.r2.mean()) > 0.2  # images memorized in training, scored again in test
    assert float(default.r2.mean()) <= 0.02
    assert float(drop_train.r2.mean()) <= 0.02


def test_repeat_rules_drop_the_naive_trials() -> None:
    features, responses = _image_effect_problem()
    images, test = responses.image.values, responses.session.values == 6
    seen = np.isin(images, images[~test])
    default = fit(features, responses, progress=False)
    np.testing.assert_array_equal(default.is_test.values, test & ~seen)
    np.testing.assert_array_equal(default.fold.values[test & seen], -2)
    assert default.attrs["repeats"] == "drop-test" and default.attrs["n_test_trials_dropped"] == int((test & seen).sum())
    drop_train = fit(features, responses, repeats="drop-train", progress=False)
    left_out = ~test & np.isin(images, images[test])
    np.testing.assert_array_equal(drop_train.is_test.values, test)
    np.testing.assert_array_equal(drop_train.fold.values == -2, left_out)
    assert drop_train.attrs["n_train_trials_dropped"] == int(left_out.sum()) > 0
    # the scores are those of the kept test trials: the predictions the fit keeps score to its r2
    y = responses.values[default.is_test.values]
    np.testing.assert_allclose(nt.encoding.r2_score(y, default.prediction.values[0]), default.r2.values[0], atol=1e-5)


def test_folds_keep_an_images_presentations_together() -> None:
    features, responses = _image_effect_problem()
    default = fit(features, responses, progress=False)
    train = default.fold.values >= 0
    images, folds = responses.image.values[train], default.fold.values[train]
    for image in np.unique(images):
        assert np.unique(folds[images == image]).size == 1
    # each image joins the session fold that holds most of its training presentations (ties: the lowest)
    kept = fit(features, responses, repeats="keep", progress=False)
    expected = _majority_folds(images, kept.fold.values[train])
    np.testing.assert_array_equal(folds, expected)
    assert default.attrs["n_cv_trials_moved"] == int((expected != kept.fold.values[train]).sum()) > 0
    assert json.loads(default.attrs["split"])["n_cv_trials_moved"] == default.attrs["n_cv_trials_moved"]


def test_unknown_repeats_rule() -> None:
    features, responses = _linear_problem()
    with pytest.raises(ValueError, match=r"unknown repeats 'drop'.*'drop-test'"):
        fit(features, responses, repeats="drop", progress=False)


def test_no_test_trial_left_names_the_fix() -> None:
    features = _features(40, 4, 0)
    images = np.tile(features.image.values, 3)
    responses = _responses(np.random.default_rng(0).standard_normal((120, 3)), images, np.repeat([1, 2, 3], 40))
    with pytest.raises(ValueError, match="repeats='drop-train' or 'keep'"):
        fit(features, responses, progress=False)


# --------------------------------------------------------------------------------------------
# folds that do not depend on the order of the trials


def _repeats_across_sessions(seed: int = 0, n_sessions: int = 9, per_session: int = 40, n_images: int = 90,
                             n_voxels: int = 40) -> tuple[xr.DataArray, xr.DataArray]:
    """Each trial shows a random image: images repeat within and across sessions.

    The last session shows images of the other sessions and 10 of its own. Trials carry a
    ``trial`` label (``t0000``…); half the voxels are a noisy linear map of the features, half
    are noise.
    """
    rng = np.random.default_rng(seed)
    features = _features(n_images, 16, seed)
    own, shared = features.image.values[:10], features.image.values[10:]
    trial_images = np.concatenate([rng.choice(shared, (n_sessions - 1) * per_session),
                                   rng.permutation(np.concatenate([own, rng.choice(shared, per_session - 10)]))])
    x = features.values[0][np.searchsorted(features.image.values, trial_images)].astype(np.float64)
    y = rng.standard_normal((trial_images.size, n_voxels))
    y[:, : n_voxels // 2] += x @ rng.standard_normal((16, n_voxels // 2)) * 0.3
    responses = _responses(y, trial_images, np.repeat(np.arange(1, n_sessions + 1), per_session))
    return features, responses.assign_coords(trial=[f"t{t:04d}" for t in range(trial_images.size)])


def _majority_folds(images: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The naive rule: each image's trials go to the fold that holds most of them (ties: the lowest)."""
    counts: dict[str, dict[int, int]] = {}
    for image, fold in zip(images, folds):
        counts.setdefault(image, {}).setdefault(int(fold), 0)
        counts[image][int(fold)] += 1
    best = {}
    for image, per_fold in counts.items():
        most = max(per_fold.values())
        best[image] = min(fold for fold, count in per_fold.items() if count == most)
    return np.array([best[image] for image in images])


def test_shuffled_trials_give_the_same_folds_alphas_and_scores() -> None:
    features, responses = _repeats_across_sessions()
    shuffled = responses.isel(trial=np.random.default_rng(1).permutation(responses.sizes["trial"]))
    ours = fit(features, responses, progress=False)
    theirs = fit(features, shuffled, progress=False)
    assert ours.attrs["n_cv_trials_moved"] > 0  # the rule was exercised
    # matched by trial label, every trial is in the same fold
    np.testing.assert_array_equal(theirs.fold.sel(trial=ours.trial).values, ours.fold.values)
    assert ours.attrs["n_cv_trials_moved"] == theirs.attrs["n_cv_trials_moved"]
    # the same folds give the same alphas; only the order of float32 sums differs
    np.testing.assert_array_equal(theirs.alpha.values, ours.alpha.values)
    for name in ("r2", "r", "cv_r2"):
        np.testing.assert_allclose(theirs[name].values, ours[name].values, atol=1e-5)
    by_label = {label: p for p, label in enumerate(shuffled.trial.values[theirs.test_trial.values])}
    order = [by_label[label] for label in responses.trial.values[ours.test_trial.values]]
    np.testing.assert_allclose(theirs.prediction.values[:, order], ours.prediction.values, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("repeats", ["drop-test", "drop-train"])
def test_folds_are_each_images_majority_fold(seed: int, repeats: str) -> None:
    _, responses = _repeats_across_sessions(seed, n_images=60 + 40 * seed)
    split = make_split(responses, None, None, 0, "kfold", 5, explicit_cv=False, repeats=repeats)
    images, sessions = responses.image.values, responses.session.values
    test_session = sessions == sessions.max()
    seen_in_training = np.isin(images, images[~test_session])
    shown_in_test = np.isin(images, images[test_session])
    left_out = test_session & seen_in_training if repeats == "drop-test" else ~test_session & shown_in_test
    train = ~test_session & ~left_out
    # -1 and -2 from the labels alone
    np.testing.assert_array_equal(split.fold == -1, test_session & ~left_out)
    np.testing.assert_array_equal(split.fold == -2, left_out)
    # the folds before images are kept together: GroupKFold over the training sessions
    grouped = np.empty(int(train.sum()), dtype=int)
    for f, (_, validation) in enumerate(GroupKFold(n_splits=5).split(grouped, groups=sessions[train])):
        grouped[validation] = f
    expected = _majority_folds(images[train], grouped)
    np.testing.assert_array_equal(split.fold[train], expected)
    assert split.info["n_cv_trials_moved"] == int((expected != grouped).sum()) > 0
    # no image in two folds; the ties were exercised
    assert pd.Series(split.fold[train]).groupby(images[train]).nunique().max() == 1
    counts = pd.crosstab(images[train], grouped).to_numpy()
    assert ((counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1).any()
    # rows in fold order, each fold one block
    np.testing.assert_array_equal(split.fold[split.train_index], np.sort(expected, kind="stable"))
    np.testing.assert_array_equal(np.diff(split.bounds), np.bincount(expected, minlength=5))
