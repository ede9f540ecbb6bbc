"""Training/test splits and cross-validation folds of encoding fits (DESIGN §3).

1. The test set is the held-out session(s) (default the last session) or a seeded fraction of
   images with all their presentations.
2. No image on both sides of the split (``repeats``): by default, test trials whose image was
   also presented in training are left out (``"drop-test"``); ``"drop-train"`` leaves out the
   training presentations of the test images instead; ``"keep"`` keeps every trial.
3. Training trials are grouped into K folds by session, or by run (session/run pairs) when
   there are fewer training sessions than folds, with :class:`sklearn.model_selection.GroupKFold`.
   With the default ``cv`` and fewer groups than folds, the folds are leave-one-group-out; an
   explicit ``cv`` that cannot be honoured is an error. Unless ``repeats="keep"``, all training
   presentations of an image then move to the fold that already holds most of them (ties: the
   lowest fold number); ``info["n_cv_trials_moved"]`` counts the trials moved. The rule looks
   only at counts, and GroupKFold at the groups' sizes, so permuting the trials permutes their
   folds with them. The earlier rule, the fold of the image's first presentation in row order,
   made the folds (and so the alphas) depend on the order of the rows, and skewed them: with 80
   images shown at random over 9 sessions, folds of 63/1/86/32/8 trials or an empty fold, where
   this rule gives 39/18/42/44/47.
4. Rows are ordered fold by fold so that each fold's validation rows are one contiguous block
   for the kernels of :mod:`neurotask.encoding.ridge`.

Trials left out by step 2 get fold ``-2`` (test trials ``-1``): neither trained on nor scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.model_selection import GroupKFold

__all__ = ["DEFAULT_CV", "REPEATS", "Split", "make_split", "training_index"]

#: Folds of the default ``cv`` (leave-one-group-out when the training set has fewer groups).
DEFAULT_CV = 5

#: What to do with images presented both in training and in test, by name.
REPEATS = {
    "drop-test": "test trials whose image was presented in training are left out of scores and nulls",
    "drop-train": "training presentations of the test images are left out of the fit",
    "keep": "every trial is kept (images may be on both sides of the split)",
}

#: ``fold`` of a test trial, and of a trial left out because its image is on both sides.
TEST_FOLD, DROPPED_FOLD = -1, -2


@dataclass(frozen=True)
class Split:
    """Which trials train and test, and the training folds.

    Attributes
    ----------
    is_test : ndarray of shape (trial,), bool
        Trials scored as test trials.
    fold : ndarray of shape (trial,), int16
        Fold of each training trial; ``-1`` for test trials, ``-2`` for trials left out.
    train_index : ndarray of shape (n_train,), int
        Training trials in fold order.
    test_index : ndarray of shape (n_test,), int
        Test trials in trial order.
    bounds : ndarray of shape (n_folds + 1,), int
        Fold f's rows are ``train_index[bounds[f]:bounds[f + 1]]``.
    info : dict
        JSON-able description: test sessions or fraction, counts, fold rule.
    """

    is_test: np.ndarray
    fold: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    bounds: np.ndarray
    info: dict[str, Any]


def training_index(results: xr.Dataset) -> np.ndarray:
    """The training trials of a fit (``fold >= 0``; ``~is_test`` for results without ``fold``)."""
    if "fold" in results:
        return np.flatnonzero(np.asarray(results["fold"].values) >= 0)
    return np.flatnonzero(~np.asarray(results["is_test"].values, dtype=bool))


def _require(responses: xr.DataArray, coord: str, why: str) -> np.ndarray:
    if coord not in responses.coords or responses[coord].dims != ("trial",):
        raise ValueError(f"responses needs a {coord!r} coordinate on trial {why}; assign one with "
                         f"responses.assign_coords({coord}=('trial', values)).")
    return responses[coord].values


def _test_mask(
    responses: xr.DataArray, test_sessions: Any, test_fraction: float | None, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    if test_sessions is not None and test_fraction is not None:
        raise ValueError("pass test_sessions or test_fraction, not both.")
    if test_fraction is not None:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}.")
        images = np.unique(responses["image"].values.astype(str))
        n_test = max(1, int(round(test_fraction * images.size)))
        chosen = np.random.default_rng(seed).choice(images, n_test, replace=False)
        return np.isin(responses["image"].values.astype(str), chosen), {"test_fraction": test_fraction, "seed": seed}
    sessions = _require(responses, "session", "to hold out sessions (or pass test_fraction=...)")
    available = [s.item() if hasattr(s, "item") else s for s in pd.unique(np.sort(sessions))]
    if test_sessions is None:
        wanted = [available[-1]]
    elif isinstance(test_sessions, (str, int, np.integer)):
        wanted = [test_sessions]
    else:
        wanted = list(test_sessions)
    missing = [s for s in wanted if str(s) not in {str(a) for a in available}]
    if missing or not wanted:
        raise ValueError(
            f"test_sessions {missing or wanted} are not sessions of responses; available sessions: {available}."
        )
    is_test = np.isin(sessions.astype(str), [str(s) for s in wanted])
    return is_test, {"test_sessions": [a for a in available if str(a) in {str(w) for w in wanted}]}


def _drop_repeats(images: np.ndarray, is_test: np.ndarray, repeats: str) -> tuple[np.ndarray, np.ndarray]:
    """``(is_test, dropped)`` after the ``repeats`` rule (step 2)."""
    if repeats not in REPEATS:
        raise ValueError(f"unknown repeats {repeats!r}; expected one of {sorted(REPEATS)}.")
    if repeats == "drop-test":
        dropped = is_test & np.isin(images, images[~is_test])
        return is_test & ~dropped, dropped
    if repeats == "drop-train":
        return is_test, ~is_test & np.isin(images, images[is_test])
    return is_test, np.zeros_like(is_test)


def _fold_groups(
    responses: xr.DataArray, train: np.ndarray, n_folds: int, explicit: bool
) -> tuple[np.ndarray, str, int, str]:
    """Step 3: ``(groups, grouping, n_folds, rule)`` for the training trials."""
    sessions = _require(responses, "session", "to group cross-validation folds (or pass cv='gcv')")[train].astype(str)
    if np.unique(sessions).size >= n_folds:
        return sessions, "session", n_folds, f"{n_folds}-fold grouped by session"
    runs = responses["run"].values[train].astype(str) if "run" in responses.coords else np.ones(train.size, str)
    groups = np.char.add(np.char.add(sessions, "/"), runs)
    n_sessions, n_groups = np.unique(sessions).size, np.unique(groups).size
    if n_groups >= n_folds:
        return groups, "run", n_folds, f"{n_folds}-fold grouped by run"
    if explicit or n_groups < 2:
        fix = ("lower cv, leave cv unset (leave-one-group-out) or use cv='gcv'" if n_groups >= 2
               else "hold out fewer sessions, or use cv='gcv'")
        raise ValueError(
            f"the training set has {n_sessions} sessions and {n_groups} runs, fewer than the cv={n_folds} folds "
            f"(folds are grouped by session, else by run); {fix}."
        )
    grouping = "run" if n_groups > n_sessions else "session"
    return groups, grouping, n_groups, f"leave-one-{grouping}-out ({n_groups} {grouping}s < cv={n_folds})"


def _keep_images_together(train_fold: np.ndarray, images: np.ndarray, n_folds: int) -> int:
    """Move every image's training presentations to the fold holding most of them; return trials moved.

    Ties go to the lowest fold number (``argmax`` takes the first maximum).
    """
    image_index = np.unique(images, return_inverse=True)[1].reshape(-1)
    counts = np.zeros((image_index.max() + 1, n_folds), dtype=np.int64)
    np.add.at(counts, (image_index, train_fold), 1)
    majority = counts.argmax(axis=1).astype(train_fold.dtype)[image_index]
    moved = int((majority != train_fold).sum())
    train_fold[:] = majority
    return moved


def make_split(
    responses: xr.DataArray,
    test_sessions: Any,
    test_fraction: float | None,
    seed: int,
    solver: str,
    n_folds: int,
    *,
    explicit_cv: bool = True,
    repeats: str = "drop-test",
) -> Split:
    """The training/test split and folds of a fit (module docstring); ``n_folds`` unused for GCV."""
    is_test, info = _test_mask(responses, test_sessions, test_fraction, seed)
    images = responses["image"].values.astype(str)
    is_test, dropped = _drop_repeats(images, is_test, repeats)
    train, test = np.flatnonzero(~is_test & ~dropped), np.flatnonzero(is_test)
    if not test.size:
        raise ValueError("the test set is empty; choose other test_sessions or a larger test_fraction"
                         + (", or pass repeats='drop-train' or 'keep'." if dropped.any() else "."))
    fold = np.full(is_test.size, TEST_FOLD, dtype=np.int16)
    fold[dropped] = DROPPED_FOLD
    info.update(
        n_train=int(train.size), n_test=int(test.size), repeats=repeats,
        n_test_trials_dropped=int(dropped.sum()) if repeats == "drop-test" else 0,
        n_train_trials_dropped=int(dropped.sum()) if repeats == "drop-train" else 0,
    )
    if solver == "gcv":
        if train.size < 2:
            raise ValueError(f"GCV needs at least 2 training trials; got {train.size}.")
        fold[train] = 0
        info.update(folds="gcv", cv_folds=0, cv_rule="generalized cross-validation", n_cv_trials_moved=0)
        return Split(is_test, fold, train, test, np.array([0, train.size]), info)
    if train.size < n_folds:
        raise ValueError(f"{train.size} training trials are fewer than the cv={n_folds} folds; lower cv.")
    groups, grouping, n_folds, rule = _fold_groups(responses, train, n_folds, explicit_cv)
    train_fold = np.empty(train.size, dtype=np.int16)
    for f, (_, validation) in enumerate(GroupKFold(n_splits=n_folds).split(train, groups=groups)):
        train_fold[validation] = f
    moved = 0 if repeats == "keep" else _keep_images_together(train_fold, images[train], n_folds)
    counts = np.bincount(train_fold, minlength=n_folds)
    if (counts == 0).any():
        raise ValueError(f"keeping each image's presentations in one fold left fold(s) {np.flatnonzero(counts == 0)} "
                         f"empty; lower cv or pass repeats='keep'.")
    order = np.argsort(train_fold, kind="stable")
    fold[train] = train_fold
    bounds = np.concatenate([[0], np.cumsum(counts)])
    info.update(folds=grouping, n_folds=n_folds, cv_folds=n_folds, cv_rule=rule, n_cv_trials_moved=moved)
    return Split(is_test, fold, train[order], test, bounds, info)
