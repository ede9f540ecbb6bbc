"""Small synthetic features/responses and a stand-in encoding fit (contract B shapes, sklearn Ridge)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from sklearn.linear_model import Ridge

from neurotask.datasets.synthetic import make_synthetic_features


def make_responses(features: xr.DataArray, drivers: list[str], *, n_sessions: int = 4, trials_per_session: int = 60,
                   snr: float = 1.0, seed: int = 0) -> xr.DataArray:
    """Responses (trial, voxel): voxel v is driven by model ``drivers[v]`` ('' = pure noise).

    The last session shows images never shown before (as BOLD5000's held-out sessions mostly do),
    so a feature space cannot score on the test set by memorizing image identities.
    """
    rng = np.random.default_rng(seed)
    n_trials = n_sessions * trials_per_session
    n_train_images = features.sizes["image"] * 3 // 4
    index = np.concatenate([
        rng.integers(0, n_train_images, n_trials - trials_per_session),
        rng.integers(n_train_images, features.sizes["image"], trials_per_session),
    ])
    images = features["image"].values[index]
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


def stand_in_encoding_fit(features, responses, models=None, *, test_sessions=None, test_fraction=None, alphas=None,
                          cv=5, standardize=False, client=None, **ignored):
    """nt.encoding.fit's contract (B) with sklearn's RidgeCV (per-voxel alpha by leave-one-out);
    a tuple (a, b) in models is the joint model "a+b", features standardized with training statistics."""
    from sklearn.linear_model import RidgeCV

    sessions = responses["session"].values
    test_sessions = [sessions.max()] if test_sessions is None else list(test_sessions)
    is_test = np.isin(sessions, test_sessions)
    alphas = np.logspace(-2, 7, 19) if alphas is None else np.asarray(alphas)
    y = np.asarray(responses.values, dtype=np.float64)
    specs = [(m,) if isinstance(m, str) else tuple(m) for m in (features["model"].values if models is None else models)]
    names = ["+".join(spaces) for spaces in specs]
    r2, r, best = [], [], []
    for spaces in specs:
        x = np.concatenate([features.sel(model=s, image=responses["image"].values).values for s in spaces], 1)
        x = x.astype(np.float64)
        if standardize or len(spaces) > 1:
            x = (x - x[~is_test].mean(0)) / np.where(x[~is_test].std(0) > 0, x[~is_test].std(0), 1)
        ridge = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[~is_test], y[~is_test])
        pred, obs = ridge.predict(x[is_test]), y[is_test]
        r2.append(1 - ((obs - pred) ** 2).sum(0) / ((obs - obs.mean(0)) ** 2).sum(0))
        pc, oc = pred - pred.mean(0), obs - obs.mean(0)
        r.append((pc * oc).sum(0) / np.sqrt((pc**2).sum(0) * (oc**2).sum(0)))
        best.append(np.broadcast_to(ridge.alpha_, (y.shape[1],)))
    dims = ("model", "voxel")
    return xr.Dataset(
        {"r2": (dims, np.asarray(r2, np.float32)), "r": (dims, np.asarray(r, np.float32)),
         "alpha": (dims, np.asarray(best, np.float32)), "is_test": ("trial", is_test)},
        coords={"model": names, **{c: responses[c] for c in ("i", "j", "k", "image", "session", "run")}},
        attrs={"split": json.dumps({"test_sessions": [int(s) for s in test_sessions]})},
    )


@pytest.fixture
def encoding_fit(monkeypatch):
    """The real nt.encoding.fit when it exists, else the stand-in (patched in for the library's calls)."""
    import neurotask.encoding

    if not hasattr(neurotask.encoding, "fit"):
        monkeypatch.setattr(neurotask.encoding, "fit", stand_in_encoding_fit, raising=False)
    return neurotask.encoding.fit


@pytest.fixture(scope="session")
def responses_factory():
    """make_responses, for test modules (conftest is not importable by name across test folders)."""
    return make_responses
