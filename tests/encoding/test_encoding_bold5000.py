"""End to end: synthetic BOLD5000 tree (planted drivers) → ingestion → encoding recovers the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

import neurotask as nt
from neurotask.datasets import make_synthetic_features, write_synthetic_bold5000

MODELS = ["autoencoding", "depth_euclidean", "class_object"]


def test_planted_truth_is_recovered_from_a_synthetic_tree(tmp_path) -> None:
    # 3 sessions of CSI1's real trial order (1110 trials, 1086 images), a small brain
    features = make_synthetic_features(MODELS, 1086, n_features=32)
    truth = write_synthetic_bold5000(tmp_path, features, n_sessions=3, volume_shape=(12, 12, 8), seed=0)
    responses = nt.load_bold5000(tmp_path, "CSI1", store=tmp_path / "responses.zarr")
    results = nt.encoding.fit(features, responses, progress=False)
    assert '"folds": "run"' in results.attrs["split"]  # 2 training sessions < 5 folds

    where = pd.MultiIndex.from_arrays([truth.i.values, truth.j.values, truth.k.values]).get_indexer(
        pd.MultiIndex.from_arrays([results.i.values, results.j.values, results.k.values]))
    assert (where >= 0).all()
    driver, true_r2 = truth.driver.values[where], truth.true_r2.values[where]
    signal = driver != ""
    r2 = results.r2.values
    names = results.model.values
    assert np.mean(names[np.argmax(r2, axis=0)][signal] == driver[signal]) >= 0.9
    own = r2[[list(names).index(d) for d in driver[signal]], np.flatnonzero(signal)]
    # 370 test trials: sampling error of a voxel's R² ~0.04; the mean tracks the planted R²
    assert abs(np.mean(own - true_r2[signal])) < 0.05
    assert np.mean(np.abs(own - true_r2[signal])) < 0.08
    # noise voxels choose the largest alphas: predictions ~ the training mean, R² ~ -(mean shift)²
    assert np.mean(r2[:, ~signal]) <= 0.005
    assert np.median(r2[:, ~signal]) <= 1e-4
