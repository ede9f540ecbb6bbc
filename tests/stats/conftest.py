"""Small synthetic features/responses and a stand-in encoding fit (contract B shapes, sklearn Ridge)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import Ridge

from neurotask.datasets.synthetic import make_synthetic_features


def make_responses(features: xr.DataArray, drivers: list[str], *, n_sessions: int = 4, trials_per_session: int = 60,
                   snr: float = 1.0, seed: int = 0) -> xr.DataArray:
    """Responses (trial, voxel): voxel v is driven by model ``drivers[v]`` ('' = pure noise)."""
    rng = np.random.default_rng(seed)
    n_trials = n_sessions * trials_per_session
    images = features["image"].values[rng.integers(0, features.sizes["image"], n_trials)]
    values = rng.standard_normal((n_trials, len(drivers)))
    for v, driver in enumerate(drivers):
        if driver:
            x = features.sel(model=driver, image=images).values.astype(np.float64)
            signal = (x - x.mean(0)) @ rng.standard_normal(x.shape[1])
            values[:, v] += snr * signal / signal.std()
    session = np.repeat(np.arange(1, n_sessions + 1), trials_per_session)
    return xr.DataArray(
        values.astype(np.float32),
        dims=("trial", "voxel"),
        coords={
            "image": ("trial", images),
            "session": ("trial", session),
            "run": ("trial", np.tile(np.repeat([1, 2], trials_per_session // 2), n_sessions)),
            "i": ("voxel", np.arange(len(drivers)) % 5),
            "j": ("voxel", (np.arange(len(drivers)) // 5) % 4),
            "k": ("voxel", np.arange(len(drivers)) // 20),
        },
        name="responses",
        attrs={"affine": "[[2,0,0,0],[0,2,0,0],[0,0,2,0],[0,0,0,1]]", "volume_shape": "[5, 4, 8]"},
    )


def stand_in_fit(features: xr.DataArray, responses: xr.DataArray, alpha: float | np.ndarray = 10.0,
                 test_sessions: tuple[int, ...] = (4,)) -> tuple[xr.Dataset, xr.DataArray]:
    """An encoding fit in contract B's shapes: results (r2, r, alpha, is_test) and test predictions."""
    is_test = np.isin(responses["session"].values, test_sessions)
    y = responses.values.astype(np.float64)
    n_voxels = y.shape[1]
    alphas = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (features.sizes["model"], n_voxels))
    predictions, r2, r = [], [], []
    for m, model in enumerate(features["model"].values):
        x = features.sel(model=model, image=responses["image"].values).values.astype(np.float64)
        pred = np.empty((int(is_test.sum()), n_voxels))
        for value in np.unique(alphas[m]):
            cols = alphas[m] == value
            pred[:, cols] = Ridge(alpha=value).fit(x[~is_test], y[~is_test][:, cols]).predict(x[is_test])
        obs = y[is_test]
        r2.append(1 - ((obs - pred) ** 2).sum(0) / ((obs - obs.mean(0)) ** 2).sum(0))
        r.append([np.corrcoef(pred[:, v], obs[:, v])[0, 1] for v in range(n_voxels)])
        predictions.append(pred)
    voxel = {c: responses[c] for c in ("i", "j", "k")}
    dims = ("model", "voxel")
    results = xr.Dataset(
        {
            "r2": (dims, np.asarray(r2, np.float32)),
            "r": (dims, np.asarray(r, np.float32)),
            "alpha": (dims, alphas.astype(np.float32)),
            "is_test": ("trial", is_test),
        },
        coords={"model": features["model"].values, **voxel,
                **{c: responses[c] for c in ("image", "session", "run")}},
        attrs={"split": '{"test_sessions": [4]}', "parameters": '{"standardize": false}'},
    )
    test = responses.isel(trial=np.flatnonzero(is_test))
    prediction = xr.DataArray(
        np.asarray(predictions, np.float32), dims=("model", "trial", "voxel"),
        coords={"model": features["model"].values, "image": ("trial", test["image"].values)}, name="prediction",
    )
    return results, prediction


@pytest.fixture(scope="session")
def small_fit():
    """Two models, 120 voxels: 40 driven by 'normal', 20 by 'class_object', 60 pure noise."""
    features = make_synthetic_features(["normal", "class_object"], 150, n_features=32, seed=1)
    drivers = ["normal"] * 40 + ["class_object"] * 20 + [""] * 60
    responses = make_responses(features, drivers, snr=0.7, seed=2)
    results, prediction = stand_in_fit(features, responses)
    return features, responses, results, prediction, np.array(drivers)
