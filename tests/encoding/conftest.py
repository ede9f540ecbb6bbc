"""Tiny synthetic encoding problems with planted drivers, shared by the encoding tests."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from neurotask.datasets import make_synthetic_features

MODELS = ["autoencoding", "depth_euclidean", "class_object"]


def planted_problem(
    n_images: int = 400,
    n_trials: int = 480,
    n_sessions: int = 6,
    n_features: int = 24,
    n_voxels_per_driver: int = 60,
    n_noise_voxels: int = 60,
    seed: int = 0,
) -> tuple[xr.DataArray, xr.DataArray, np.ndarray, np.ndarray]:
    """Features, responses, the planted driver per voxel ('' = noise) and the planted R².

    Voxels ``[0, n)`` are driven by autoencoding, ``[n, 2n)`` by depth_euclidean, the rest are
    noise. Each signal voxel is a random linear map of its driver's (standardized) features
    plus Gaussian noise scaled so that the signal's share of variance is the planted R².
    Trials: equal sessions of 4 runs, each run showing its own images, some of them twice.
    """
    rng = np.random.default_rng(seed)
    features = make_synthetic_features(MODELS, n_images, n_features=n_features, seed=seed)
    images = rng.permutation(features.image.values)
    n_runs = 4 * n_sessions
    per_run = n_trials // n_runs
    # each run shows its own images, some twice: no image on both sides of a session or run split
    # (tests of images repeated across sessions build their own trials)
    starts = np.linspace(0, n_images, n_runs + 1).round().astype(int)
    order = np.concatenate([
        rng.permutation(np.concatenate([own, rng.choice(own, per_run - own.size, replace=False)]))
        for own in (images[a:b] for a, b in zip(starts[:-1], starts[1:]))
    ])
    per_session = n_trials // n_sessions
    session = np.repeat(np.arange(1, n_sessions + 1), per_session)
    run = np.tile(np.repeat(np.arange(1, 5), per_session // 4), n_sessions)
    n_voxels = 2 * n_voxels_per_driver + n_noise_voxels
    driver = np.array(["autoencoding"] * n_voxels_per_driver + ["depth_euclidean"] * n_voxels_per_driver
                      + [""] * n_noise_voxels)
    true_r2 = np.where(driver != "", rng.uniform(0.2, 0.7, n_voxels), 0.0)
    y = rng.standard_normal((n_trials, n_voxels))
    for model in ("autoencoding", "depth_euclidean"):
        x = features.sel(model=model, image=order).values.astype(np.float64)
        x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
        columns = np.flatnonzero(driver == model)
        signal = x @ rng.standard_normal((n_features, columns.size))
        signal /= signal.std(0)
        r2 = true_r2[columns]
        y[:, columns] = np.sqrt(r2) * signal + np.sqrt(1 - r2) * y[:, columns]
    responses = xr.DataArray(
        y.astype(np.float32), dims=("trial", "voxel"), name="responses",
        coords={
            "image": ("trial", order), "session": ("trial", session), "run": ("trial", run),
            "i": ("voxel", np.arange(n_voxels) % 10), "j": ("voxel", np.arange(n_voxels) // 10),
            "k": ("voxel", np.zeros(n_voxels, dtype=int)),
        },
    )
    return features, responses, driver, true_r2


@pytest.fixture(scope="session")
def planted() -> tuple[xr.DataArray, xr.DataArray, np.ndarray, np.ndarray]:
    return planted_problem()


@pytest.fixture(scope="session")
def make_planted():
    """The :func:`planted_problem` builder, for tests that need other sizes."""
    return planted_problem
