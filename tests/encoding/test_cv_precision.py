"""K-fold CV scores, chosen alphas and test scores of the ridge kernels against float64 scikit-learn,
where the fold's training Gram matrix has a null space: more features than a fold's training trials,
and exactly collinear features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from neurotask.encoding import ridge_torch
from neurotask.encoding.ridge import fit_ridge_chunk, make_ridge_factors

BACKENDS = ["numpy", "torch"]
ALPHAS = np.logspace(-2, 4, 7)
N_TRAIN, N_TEST, N_FOLDS = 200, 60, 5

#: (features, rank of the features or None for full rank): each fold trains on 160 trials, whose
#: centered rows span 159 dimensions
CASES = {
    "features = trials": (200, None),  # 41 null directions per fold
    "features > trials": (400, None),  # 241
    # 90 null directions, but the validation rows have no component there either: this case
    # agreed before the fix too, and checks that leaving those directions out keeps it so
    "collinear": (120, 30),
}


def _problem(n_features: int, rank: int | None, seed: int = 0):
    """Features with non-zero means and unequal scales; voxels from near noise-free to pure noise,
    so that small and large alphas are both chosen."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    if rank is None:
        x = rng.standard_normal((n, n_features))
    else:  # exactly collinear up to the float32 rounding of the features
        x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, n_features))
    x = x * rng.uniform(0.5, 3, n_features) + rng.uniform(-2, 5, n_features)
    signal = (x - x[:N_TRAIN].mean(0)) @ rng.standard_normal((n_features, 60))
    signal /= signal[:N_TRAIN].std(0)
    noise = np.logspace(-3, 1, 60)  # signal-to-noise from 1e6 to 1e-2 in variance
    y = signal + noise * rng.standard_normal((n, 60)) + 2.0
    x, y = x.astype(np.float32), y.astype(np.float32)
    return x[:N_TRAIN], x[N_TRAIN:], y[:N_TRAIN], y[N_TRAIN:]


def _fit(backend: str, x, x_test, y, y_test, alphas, standardize: bool) -> dict[str, np.ndarray]:
    bounds = np.linspace(0, N_TRAIN, N_FOLDS + 1).astype(int)
    if backend == "numpy":
        factors = make_ridge_factors(x, x_test, bounds, alphas=alphas, standardize=standardize)
        return fit_ridge_chunk(factors, y, y_test, alphas)
    factors = ridge_torch.make_ridge_factors(x, x_test, bounds, alphas=alphas, standardize=standardize, device="cpu")
    return ridge_torch.fit_ridge_chunk(factors, torch.as_tensor(y), y_test, alphas)


def _r2(y: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    return 1.0 - ((y - prediction) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def _reference(x, x_test, y, y_test, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 scikit-learn: (alpha, voxel) mean validation R² over the folds, and (alpha, voxel)
    test R² of the refit on all training trials; features scaled with the whole training set's
    statistics, each fit centering with its own training means (``fit_intercept``)."""
    x, x_test, y = x.astype(np.float64), x_test.astype(np.float64), y.astype(np.float64)
    scale = x.std(0) if standardize else np.ones(x.shape[1])
    x, x_test = x / scale, x_test / scale
    fold = np.repeat(np.arange(N_FOLDS), N_TRAIN // N_FOLDS)
    cv = np.zeros((ALPHAS.size, y.shape[1]))
    test = np.zeros((ALPHAS.size, y.shape[1]))
    for a, alpha in enumerate(ALPHAS):
        for f in range(N_FOLDS):
            model = Ridge(alpha=alpha, solver="svd").fit(x[fold != f], y[fold != f])
            cv[a] += _r2(y[fold == f], model.predict(x[fold == f])) / N_FOLDS
        test[a] = _r2(y_test, Ridge(alpha=alpha, solver="svd").fit(x, y).predict(x_test))
    return cv, test


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_cv_and_test_scores_match_float64_where_folds_have_null_directions(
    backend: str, standardize: bool, case: str
) -> None:
    x, x_test, y, y_test = _problem(*CASES[case])
    cv, test = _reference(x, x_test, y, y_test, standardize)
    # each alpha alone: its CV and test scores. Before, the null directions' 1/alpha times float32
    # rounding put CV R² up to 1.2e-2 and test R² up to 1.3e-2 off at alpha 0.01 (features = or >
    # trials; collinear features agreed); now CV <= 3e-6. Test R² at alpha 0.01 with 200 features
    # stays up to 1e-4 off: the whole training set has 200 trials too, and its smallest nonzero
    # directions make the float64 reference itself move by 1e-4 when the float32 inputs move by one ulp.
    # rtol: noise voxels score test R² down to -50 at small alphas, to float32's relative precision.
    for a, alpha in enumerate(ALPHAS):
        ours = _fit(backend, x, x_test, y, y_test, ALPHAS[a : a + 1], standardize)
        np.testing.assert_allclose(ours["cv_r2"], cv[a], rtol=1e-5, atol=2e-5, err_msg=f"CV R² at alpha {alpha:g}")
        np.testing.assert_allclose(ours["r2"], test[a], rtol=1e-5, atol=2e-4 if alpha < 0.1 else 2e-5,
                                   err_msg=f"test R² at alpha {alpha:g}")
    # the whole grid: each voxel's alpha, and the scores at it (now <= 1e-6)
    ours = _fit(backend, x, x_test, y, y_test, ALPHAS, standardize)
    chosen = np.searchsorted(ALPHAS, ours["alpha"])
    best = np.argmax(cv + 1e-10 * np.log(ALPHAS)[:, None], axis=0)
    voxels = np.arange(y.shape[1])
    assert np.unique(best).size >= 3  # small and large alphas are chosen
    # near noise-free voxels' CV curves are flat at small alphas: where the alphas differ, the
    # reference scores the two within 1e-8 (measured 1e-9; before, 17-28% of alphas differed
    # with more features than fold trials)
    assert np.all(np.abs(cv[chosen, voxels] - cv[best, voxels]) < 1e-8)
    assert (chosen == best).mean() >= 0.9
    np.testing.assert_allclose(ours["cv_r2"], cv[chosen, voxels], atol=2e-5)
    np.testing.assert_allclose(ours["r2"], test[chosen, voxels], atol=2e-5)
