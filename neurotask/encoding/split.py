"""Training/test splits and cross-validation folds of encoding fits (DESIGN §3).

The test set is the held-out session(s) (default the last session) or a seeded fraction of
images with all their presentations. Training trials are grouped into K folds by session, or by
run (session/run pairs) when there are fewer training sessions than folds, with
:class:`sklearn.model_selection.GroupKFold`; rows are then ordered fold by fold so that each
fold's validation rows are one contiguous block for the kernels of :mod:`neurotask.encoding.ridge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.model_selection import GroupKFold

__all__ = ["Split", "make_split"]


@dataclass(frozen=True)
class Split:
    """Which trials train and test, and the training folds."""

    is_test: np.ndarray  # (trial,) bool
    fold: np.ndarray  # (trial,) fold of each training trial, -1 for test trials
    train_index: np.ndarray  # training trials in fold order
    test_index: np.ndarray
    bounds: np.ndarray  # fold f = train_index[bounds[f]:bounds[f+1]]
    info: dict[str, Any]




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
    sessions = responses["session"].values
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


def make_split(
    responses: xr.DataArray, test_sessions: Any, test_fraction: float | None, seed: int, solver: str, n_folds: int
) -> Split:
    is_test, info = _test_mask(responses, test_sessions, test_fraction, seed)
    train = np.flatnonzero(~is_test)
    test = np.flatnonzero(is_test)
    if not test.size:
        raise ValueError("the test set is empty; choose other test_sessions or a larger test_fraction.")
    fold = np.full(is_test.size, -1, dtype=np.int16)
    info.update(n_train=int(train.size), n_test=int(test.size))
    if solver == "gcv":
        if train.size < 2:
            raise ValueError(f"GCV needs at least 2 training trials; got {train.size}.")
        fold[train] = 0
        return Split(is_test, fold, train, test, np.array([0, train.size]), {**info, "folds": "gcv"})
    if train.size < n_folds:
        raise ValueError(f"{train.size} training trials are fewer than the cv={n_folds} folds; lower cv.")
    sessions = responses["session"].values[train].astype(str)
    grouping, groups = "session", sessions
    if np.unique(sessions).size < n_folds:
        grouping = "run"
        groups = np.char.add(np.char.add(sessions, "/"), responses["run"].values[train].astype(str))
        if np.unique(groups).size < n_folds:
            raise ValueError(
                f"the training set has {np.unique(sessions).size} sessions and {np.unique(groups).size} runs, "
                f"fewer than the cv={n_folds} folds (folds are grouped by session, else by run); lower cv "
                f"or use cv='gcv'."
            )
    train_fold = np.empty(train.size, dtype=np.int16)
    for f, (_, validation) in enumerate(GroupKFold(n_splits=n_folds).split(train, groups=groups)):
        train_fold[validation] = f
    order = np.argsort(train_fold, kind="stable")
    fold[train] = train_fold
    bounds = np.concatenate([[0], np.cumsum(np.bincount(train_fold, minlength=n_folds))])
    return Split(is_test, fold, train[order], test, bounds, {**info, "folds": grouping, "n_folds": n_folds})
