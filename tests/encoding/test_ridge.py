"""The ridge kernels (numpy, and torch on the CPU) against himalaya, scikit-learn and a naive GCV."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from himalaya.ridge import RidgeCV
from himalaya.scoring import r2_score as himalaya_r2
from sklearn.linear_model import Ridge
from sklearn.model_selection import PredefinedSplit

from neurotask.encoding.ridge import (
    RIDGE_SOLVERS,
    fit_ridge_chunk,
    make_ridge_factors,
    predict_ridge,
    ridge_coefficients,
    ridge_flops,
)
from neurotask.encoding.scoring import pearson_r, r2_score

ALPHAS = np.logspace(-2, 7, 19)
BACKENDS = ["numpy", "torch"]


def _kernels(backend: str):
    """``(make_ridge_factors, fit_ridge_chunk)`` of a backend, both taking and returning numpy."""
    if backend == "numpy":
        return make_ridge_factors, fit_ridge_chunk
    from neurotask.encoding import ridge_torch

    def make(*args, **kwargs):
        return ridge_torch.make_ridge_factors(*args, device="cpu", **kwargs)

    def fit_chunk(factors, y, y_test, alphas, solver="kfold"):
        return ridge_torch.fit_ridge_chunk(factors, torch.as_tensor(y), y_test, alphas, solver)

    return make, fit_chunk


def _problem(n_train: int = 500, n_test: int = 120, k: int = 40, voxels: int = 200, seed: int = 0):
    """Features with non-zero means and unequal scales; voxels with varied signal-to-noise."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n_train + n_test, k)) * rng.uniform(0.5, 3, k) + rng.uniform(-2, 5, k)).astype(np.float32)
    weights = rng.standard_normal((k, voxels)) * rng.uniform(0, 0.3, voxels)
    y = (x @ weights + rng.standard_normal((n_train + n_test, voxels)) + 2.0).astype(np.float32)
    folds = np.repeat(np.arange(5), n_train // 5)
    return x[:n_train], x[n_train:], y[:n_train], y[n_train:], folds


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_kfold_alphas_and_scores_match_himalaya(seed: int, backend: str) -> None:
    make, fit_chunk = _kernels(backend)
    x, x_test, y, y_test, folds = _problem(seed=seed)
    factors = make(x, x_test, np.searchsorted(folds, np.arange(6)), alphas=ALPHAS)
    ours = fit_chunk(factors, y, y_test, ALPHAS)

    reference = RidgeCV(alphas=ALPHAS, cv=PredefinedSplit(folds), fit_intercept=True,
                        solver_params={"score_func": himalaya_r2})
    reference.fit(x, y)
    alpha = np.asarray(reference.best_alphas_)
    same = np.isclose(alpha, ours["alpha"], rtol=1e-5)
    # float32 noise may flip near-ties: where alphas differ, the two CV scores must agree
    assert same.mean() >= 0.99
    cv_scores = np.asarray(reference.cv_scores_)
    assert np.all(np.abs(cv_scores - ours["cv_r2"])[~same] < 1e-5)
    # float32 sums over a few hundred trials: ~1e-6 relative; 1e-5 absolute is the acceptance bound
    np.testing.assert_allclose(ours["cv_r2"][same], cv_scores[same], atol=1e-5)
    np.testing.assert_allclose(ours["r2"], r2_score(y_test, np.asarray(reference.predict(x_test))), atol=1e-4)


@pytest.mark.parametrize("standardize", [False, True])
def test_coefficients_match_sklearn_ridge(standardize: bool) -> None:
    x, x_test, y, _, _ = _problem(voxels=30)
    alpha = np.logspace(-1, 4, 30)  # one alpha per voxel
    factors = make_ridge_factors(x, x_test, [0, x.shape[0]], standardize=standardize, folds=False)
    coef, intercept = ridge_coefficients(factors, y, alpha)

    x64 = x.astype(np.float64)
    scale = x64.std(axis=0) if standardize else np.ones(x.shape[1])
    reference = Ridge(alpha=alpha, fit_intercept=True).fit(x64 / scale, y.astype(np.float64))
    # float32 GEMMs against float64 sklearn: 1e-4 relative to the largest coefficient
    np.testing.assert_allclose(coef, reference.coef_.T / scale[:, None], atol=1e-4 * np.abs(reference.coef_).max())
    np.testing.assert_allclose(intercept, reference.intercept_, atol=1e-4 * np.abs(reference.intercept_).max())
    np.testing.assert_allclose(
        predict_ridge(factors, y, alpha), reference.predict(x_test.astype(np.float64) / scale), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("standardize", [False, True])
def test_torch_predictions_match_sklearn_ridge(standardize: bool) -> None:
    from neurotask.encoding import ridge_torch

    x, x_test, y, _, _ = _problem(voxels=30)
    alpha = np.logspace(-1, 4, 30)
    factors = ridge_torch.make_ridge_factors(x, x_test, [0, x.shape[0]], standardize=standardize, folds=False)
    x64 = x.astype(np.float64)
    scale = x64.std(axis=0) if standardize else np.ones(x.shape[1])
    reference = Ridge(alpha=alpha, fit_intercept=True).fit(x64 / scale, y.astype(np.float64))
    np.testing.assert_allclose(ridge_torch.predict_ridge(factors, torch.as_tensor(y), alpha),
                               reference.predict(x_test.astype(np.float64) / scale), rtol=1e-4, atol=1e-4)
    # numpy factors copied to the device predict the same
    numpy_factors = make_ridge_factors(x, x_test, [0, x.shape[0]], standardize=standardize, folds=False)
    moved = ridge_torch.factors_on_device(numpy_factors, "cpu")
    assert ridge_torch.factors_on_device(numpy_factors, "cpu") is moved  # copied once
    np.testing.assert_allclose(ridge_torch.predict_ridge(moved, torch.as_tensor(y), alpha),
                               predict_ridge(numpy_factors, y, alpha), rtol=1e-4, atol=1e-5)


def _naive_gcv(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """GCV(alpha) = n ‖(I − H) y‖² / tr(I − H)², H the hat matrix of ridge with intercept."""
    n = x.shape[0]
    xc = x - x.mean(axis=0)
    yc = y - y.mean(axis=0)
    scores = []
    for alpha in alphas:
        hat = xc @ np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T) + 1.0 / n
        residual = y - hat @ y
        scores.append(n * (residual**2).sum(axis=0) / (n - np.trace(hat)) ** 2)
    return 1.0 - np.array(scores) / ((yc**2).sum(axis=0) / n)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gcv_matches_naive_hat_matrix(backend: str) -> None:
    make, fit_chunk = _kernels(backend)
    x, x_test, y, y_test, _ = _problem(n_train=300, voxels=80)
    factors = make(x, x_test, [0, x.shape[0]], folds=False)
    ours = fit_chunk(factors, y, y_test, ALPHAS, solver="gcv")
    scores = _naive_gcv(x.astype(np.float64), y.astype(np.float64), ALPHAS)
    best = np.argmax(scores + 1e-10 * np.log(ALPHAS)[:, None], axis=0)
    np.testing.assert_array_equal(ours["alpha"], ALPHAS[best])
    np.testing.assert_allclose(ours["cv_r2"], scores[best, np.arange(y.shape[1])], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("n_train", "k"), [(200, 300), (200, 800), (500, 40)])
def test_gcv_on_noise_voxels_matches_float64_hat_matrix(backend: str, n_train: int, k: int) -> None:
    # noise voxels: flat GCV curves at large alphas, the ordering of nearby alphas is decided
    # by small differences; with more features than trials the least-squares fit interpolates,
    # so at small alphas RSS and 1 - df/n both go to 0 (RSS as ‖y‖² − Σ b²·shrink, a difference
    # of float32-rounded sums, gave 50% / 21% equal alphas at k=300 / 800, numpy; 51% / 25% torch)
    make, fit_chunk = _kernels(backend)
    x, x_test, _, _, _ = _problem(n_train=n_train, k=k, voxels=1)
    rng = np.random.default_rng(7)
    y = (rng.standard_normal((n_train, 600)) + 2.0).astype(np.float32)
    factors = make(x, x_test, [0, n_train], folds=False)
    ours = fit_chunk(factors, y, y[: x_test.shape[0]], ALPHAS, solver="gcv")
    scores = _naive_gcv(x.astype(np.float64), y.astype(np.float64), ALPHAS)
    best = np.argmax(scores + 1e-10 * np.log(ALPHAS)[:, None], axis=0)
    same = ours["alpha"] == ALPHAS[best]
    print(f"{same.mean():.2%} of GCV alphas equal the float64 hat matrix's ({backend}, n={n_train}, k={k})")
    assert same.mean() >= 0.99
    # float32 projections: the chosen scores to 1e-5 (measured <= 2e-6)
    np.testing.assert_allclose(ours["cv_r2"], scores[best, np.arange(y.shape[1])], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_go_to_the_larger_alpha(backend: str) -> None:
    make, fit_chunk = _kernels(backend)
    # constant features: every alpha predicts the fold's training mean, so all CV scores are equal
    x, x_test, y, _, folds = _problem(voxels=3)
    x, x_test = np.zeros_like(x), np.zeros_like(x_test)
    alphas = np.array([1e6, 1e7, 1e8])
    factors = make(x, x_test, np.searchsorted(folds, np.arange(6)), alphas=alphas)
    out = fit_chunk(factors, y, y[: x_test.shape[0]], alphas)
    np.testing.assert_array_equal(out["alpha"], 1e8)


def test_solver_registry_and_flops() -> None:
    assert set(RIDGE_SOLVERS) == {"kfold", "gcv"}
    # the count is linear in voxels and dominated by the per-alpha validation GEMMs
    assert ridge_flops(4000, 1000, 2048, 2, 10, 5) == 2 * ridge_flops(4000, 1000, 2048, 1, 10, 5)
    x, x_test, y, y_test, folds = _problem(voxels=3)
    factors = make_ridge_factors(x, x_test, np.searchsorted(folds, np.arange(6)), alphas=[1.0, 2.0])
    with pytest.raises(ValueError, match="not computed for these alphas"):
        fit_ridge_chunk(factors, y, y_test, np.array([1.0, 3.0]))


def test_scores_match_scipy() -> None:
    from scipy.stats import pearsonr

    rng = np.random.default_rng(3)
    y, p = rng.standard_normal((2, 50, 4))
    np.testing.assert_allclose(pearson_r(y, p), [pearsonr(y[:, v], p[:, v])[0] for v in range(4)])
    np.testing.assert_allclose(r2_score(y, p), 1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0))
