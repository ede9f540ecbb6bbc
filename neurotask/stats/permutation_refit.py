"""The numpy kernels of the refit permutation null (:mod:`neurotask.stats.permutation`).

With fixed alphas, ridge's test predictions are a linear map of the training responses,
``ŷ_test = ȳ_train + H_α y_train`` with ``H_α = X̃_test (X̃ᵀX̃ + αI)⁻¹ X̃ᵀ``: :func:`_hat_matrices`
builds ``H_α`` from the ridge factors (one eigendecomposition of the k×k Gram per model), and
:func:`_refit_null` scores every permutation of the training rows with one GEMM per distinct alpha.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from neurotask.encoding import pearson_r, r2_score
from neurotask.encoding.design import model_factors

#: Test-set scores of the refit null, from the one scoring module.
_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"r": pearson_r, "r2": r2_score}


def _hat_matrices(
    x_train: np.ndarray, x_test: np.ndarray, alphas: np.ndarray, standardize: bool
) -> np.ndarray:
    """Ridge solution operators ``H_α (alpha, test trial, train trial)`` mapping centred training
    responses to test predictions, from the ridge factors (one eigendecomposition of the k×k Gram)."""
    design = np.concatenate([x_train, x_test]).astype(np.float32)
    factors = model_factors(design, np.arange(len(x_train)), np.arange(len(x_train), len(design)),
                            standardize=standardize)
    test_v = factors.test_projection.astype(np.float64)
    train_v = factors.train_projection.astype(np.float64)  # X V, rotated in float64 (as the fit's refit)
    eigenvalues = factors.eigenvalues.astype(np.float64)
    return np.stack([(test_v / (eigenvalues + alpha)) @ train_v.T for alpha in alphas]).astype(np.float32)


def _refit_null(
    perms: np.ndarray,
    hats: np.ndarray,
    alpha_index: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    statistic: str,
) -> np.ndarray:
    """Null statistics ``(permutation, 1, voxel)`` of the refit method for one model.

    Voxels are sorted by alpha once, so each alpha's voxels are a contiguous slice: per
    permutation, one row gather of the training responses and one GEMM per distinct alpha.
    """
    order = np.argsort(alpha_index, kind="stable")
    bounds = np.searchsorted(alpha_index[order], np.arange(hats.shape[0] + 1))
    y_sorted = np.ascontiguousarray(y_train[:, order], dtype=np.float32)
    y_test_sorted = y_test[:, order].astype(np.float64)
    train_mean = y_sorted.mean(axis=0, dtype=np.float64)
    prediction = np.empty((hats.shape[1], y_sorted.shape[1]), dtype=np.float32)
    out = np.empty((perms.shape[0], 1, y_train.shape[1]), dtype=np.float32)
    for p, perm in enumerate(perms):
        permuted = y_sorted[perm]
        for index in range(hats.shape[0]):
            cols = slice(bounds[index], bounds[index + 1])
            if cols.start < cols.stop:
                np.matmul(hats[index], permuted[:, cols], out=prediction[:, cols])
        out[p, 0, order] = _SCORES[statistic](y_test_sorted, train_mean + prediction)
    return out
