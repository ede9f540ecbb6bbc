"""Numpy kernels of voxelwise ridge regression: decompositions, alpha selection, refit.

Nothing here knows about xarray or Dask. The work is split in two so that orchestration can
share the expensive part:

1. :func:`make_ridge_factors` — per model, once: center (optionally scale) the features with
   training statistics, eigendecompose the k×k Gram matrix of the training set and of each
   cross-validation fold's training part, and project the validation/test features on the
   eigenvectors. Cost independent of the number of voxels.
2. :func:`fit_ridge_chunk` — per voxel chunk: only GEMMs against those factors. With
   ``G = Xᵀ X = V diag(s) Vᵀ`` (fold-centered), the validation predictions for ``alpha`` are
   ``(X_val V) diag(1 / (s + alpha)) Vᵀ (Xᵀ Y)``. Validation folds are smaller than the number
   of features (n_val < k), so each fold stores, per alpha, the (n_val × k) solution
   ``(X_val V) diag(1 / (s + alpha)) Vᵀ`` (computed once per model) instead of ``V``: a chunk
   then costs one (n_val × k)·(k × voxels) GEMM per alpha and fold, with no k×k rotation.

Fold training cross-products come from per-fold validation products: with ``C_f = X_fᵀ Y_f``
over fold f's rows, the whole training set's ``Xᵀ Y = Σ_f C_f`` and fold f's training part is
``Xᵀ Y − C_f`` (then corrected for the fold's own means), so every training row enters one GEMM.
Features and targets are first centered with the whole training set's means, which keeps
these float32 differences well conditioned.

Precision where the Gram matrices are singular or nearly so (against a float64 reference):

* Every decomposition keeps only the directions a fit on its n centered training rows can use
  (:func:`kept_directions`): the n − 1 largest eigenvalues above the float64 rounding of the
  Gram. The others are its null space (more features than n − 1, or collinear features), where
  ``Xᵀ y`` has no component; their ``1 / (s + alpha) ≈ 1 / alpha`` only multiplied the float32
  rounding of the cross-products by the validation rows' components there, which are not small
  when a fold has fewer training trials than features. With 160–1600 training trials per fold
  and 1.25–5 times as many features, CV R² was up to 4.5e-2 off at alpha 0.01 (∝ 1/alpha) and
  wrong alphas cost up to 5e-3 of it; now ≤ 9e-6 and the same alphas. Collinear features with
  fewer features than trials were not affected: the validation rows have no component on that
  null space either.
* The refit projects the responses with ``X V`` rotated in float64 (``train_projection``), not
  as ``Vᵀ (Xᵀ y)``: the float32 rounding of ``Xᵀ y`` is ≈ eps ‖Xᵀ y‖ in every direction, large
  against ``vᵢᵀ Xᵀ y ~ √sᵢ ‖y‖`` where sᵢ is small, while column i of ``X V`` has norm ``√sᵢ``
  and rounds relative to it. With as many features as training trials (200 × 200), test R² at
  alpha 0.01 was 2e-3 off; now 1e-4, as far as one ulp of the float32 inputs moves the float64
  reference. Cost: an (r × n)·(n × voxels) GEMM instead of (r × k)·(k × voxels), +3% of the
  K-fold chunk kernel at 2000 trials × 512 features (GCV's: −11%, its k × k rotation gone), and
  the float64 (n × k)·(k × r) product once per model (+0.6 s of 7 s at 4000 × 2048).
* Not done for the folds: with 0.9–1.05 times as many features as a fold's training trials, or
  collinear features plus noise, the folds' smallest nonzero eigenvalues still amplify the
  rounding of ``Xᵀ y − C_f``: CV R² up to 2e-2 off at alpha 0.01 and 1e-4 at alpha 1 (≤ 7e-5
  at the alphas chosen in those tests), where one ulp of the inputs moves the reference by up to
  5e-4. The remedy, each fold's ``(X_f V_f)ᵀ y`` from a float64 ``X_f V_f``, costs ≈ 4 n k multiply-adds
  more per voxel: +18% of the chunk kernel's GEMMs at 2000 × 512 with 19 alphas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurotask.encoding.scoring import pearson_r, r2_score
from neurotask.execution import blas_threads, cpu_count

__all__ = [
    "RIDGE_SOLVERS",
    "FoldFactors",
    "RidgeFactors",
    "make_ridge_factors",
    "solve_ridge_cv_eigh",
    "solve_ridge_gcv_eigh",
    "gcv_scores",
    "kept_directions",
    "fit_ridge_chunk",
    "predict_ridge",
    "ridge_coefficients",
    "ridge_flops",
]

#: Scores that differ by less than this slope per log(alpha) count as tied; the larger alpha wins
#: (the same rule as himalaya's ``_select_best_alphas``).
_TIE_SLOPE = 1e-10

_EPS64 = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class FoldFactors:
    """One cross-validation fold's ridge solutions (k = number of features).

    Attributes
    ----------
    alphas : ndarray of shape (n_alphas,), float64
        The alpha grid the solutions are for.
    solutions : sequence of ndarray of shape (n_val, k), float32
        One per alpha (an (n_alphas, n_val, k) array or a list of its rows):
        ``(X_val − m) V diag(1 / (s + alpha)) Vᵀ`` from the kept directions (:func:`kept_directions`)
        of ``G = V diag(s) Vᵀ``, the fold's training Gram matrix centered with its training mean
        ``m``; on the span of the centered training rows, where ``X_trainᵀ y`` lies, that is
        ``(X_val − m) (G + alpha I)⁻¹``. The fold's validation predictions are
        ``solutions[a] @ (X_trainᵀ y − n_train m ȳ_train)``.
    train_mean : ndarray of shape (k,), float32
        ``m``, relative to the whole training mean.
    """

    alphas: np.ndarray
    solutions: Sequence[np.ndarray]
    train_mean: np.ndarray


@dataclass(frozen=True)
class RidgeFactors:
    """Everything a voxel chunk needs from one model's features.

    Attributes
    ----------
    design : ndarray of shape (n_train, k), float32
        Training features, centered (and scaled) with training statistics, rows in fold order.
    bounds : ndarray of shape (n_folds + 1,), int
        Fold f's validation rows are ``design[bounds[f]:bounds[f + 1]]``.
    folds : tuple of FoldFactors
        One per fold (empty when alphas are selected by GCV).
    eigenvalues : ndarray of shape (r,), float32
        The eigenvalues of the whole training Gram matrix that :func:`kept_directions` keeps
        (``r ≤ min(k, n_train − 1)``), largest first.
    eigenvectors : ndarray of shape (k, r), float32
        Their eigenvectors.
    train_projection : ndarray of shape (n_train, r), float32
        ``X V``: the training design in that eigenbasis, computed in float64 (column i has norm
        ``√s_i``, so it stays accurate where ``s_i`` is small; ``Vᵀ (Xᵀ y)`` in float32 does not).
    test_projection : ndarray of shape (n_test, r), float32
        Test features, centered (and scaled) like the training ones, in that eigenbasis.
    offset : ndarray of shape (k,), float64
        Training mean of the raw features.
    scale : ndarray of shape (k,), float64
        Divisor applied after centering (ones unless standardized).
    """

    design: np.ndarray
    bounds: np.ndarray
    folds: tuple[FoldFactors, ...]
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    train_projection: np.ndarray
    test_projection: np.ndarray
    offset: np.ndarray
    scale: np.ndarray

    @property
    def nbytes(self) -> int:
        """Memory held by the factors, in bytes."""
        arrays = [self.design, self.eigenvectors, self.train_projection, self.test_projection]
        arrays += [solution for fold in self.folds for solution in fold.solutions]
        return int(sum(a.nbytes for a in arrays))


def factors_nbytes(n_train: int, n_test: int, n_features: int, n_folds: int, n_alphas: int) -> int:
    """Bytes :func:`make_ridge_factors` will hold at most, to group models by memory before computing."""
    per_fold = n_alphas * (n_train // max(n_folds, 1) + 1) * n_features
    rank = min(n_features, max(n_train - 1, 0))
    return 4 * (n_train * n_features + (n_features + n_train + n_test) * rank + n_folds * per_fold)


# --------------------------------------------------------------------------------------------
# 1. factors (once per model)


def standardize_features(
    x_train: np.ndarray, x_test: np.ndarray, *, standardize: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Center (and optionally scale to unit variance) features with training statistics.

    Returns ``(x_train, x_test, offset, scale)``, the first two float32. Constant training
    features keep scale 1 (they stay all-zero after centering).
    """
    offset = x_train.mean(axis=0, dtype=np.float64)
    scale = np.ones_like(offset)
    if standardize:
        std = x_train.std(axis=0, dtype=np.float64)
        scale = np.where(std > 0, std, 1.0)
    x_train = ((x_train - offset) / scale).astype(np.float32)
    x_test = ((x_test - offset) / scale).astype(np.float32)
    return x_train, x_test, offset, scale


def kept_directions(eigenvalues: Any, n_train: int) -> Any:
    """Indices of the eigen-directions a ridge fit on ``n_train`` centered rows can use (numpy or torch).

    Parameters
    ----------
    eigenvalues : array of shape (k,), float64, non-negative
        Eigenvalues of the centered training Gram matrix, computed in float64.
    n_train : int
        Training rows.

    Returns
    -------
    array of int, shape (r,)
        The ``n_train − 1`` largest eigenvalues, or fewer: those above ``s_max · max(n_train, k) ·
        eps`` (float64 rounding of the Gram matrix), largest first.

    Notes
    -----
    Centered rows span at most n − 1 dimensions. The other directions are the Gram's null
    space (more features than n − 1, or collinear features), with rounding noise for eigenvalues,
    and ``Xᵀ y`` has no component there: a ridge fit's weights are exactly 0 along them.
    """
    tol = eigenvalues.max() * max(n_train, eigenvalues.shape[0]) * _EPS64
    largest = (-eigenvalues).argsort()[: max(n_train - 1, 0)]
    return largest[eigenvalues[largest] > tol]


def _eigh(gram: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The kept (:func:`kept_directions`) eigenvalues and eigenvectors of a centered Gram, float64."""
    # float64: the Gram squares the features' condition number; float32 eigenvalues of small
    # directions would be noise of the size of the smallest alphas. numpy's eigh (LAPACK syevd,
    # like scipy's driver="evd") releases the GIL, so the per-fold decompositions really run side
    # by side in threads; scipy's holds it (6 decompositions: 8.2 s -> 5 s on 2 cores).
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    kept = kept_directions(np.clip(eigenvalues, 0, None), n_train)
    return eigenvalues[kept], eigenvectors[:, kept]


def training_gram(design: np.ndarray) -> np.ndarray:
    """``Xᵀ X`` of the (training-centered) design in float64, shape (k, k)."""
    design64 = design.astype(np.float64)
    return design64.T @ design64


def fold_eigh(
    design: np.ndarray, bounds: np.ndarray, fold: int, gram: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fold ``fold``'s centered training Gram eigendecomposition (its kept directions).

    Returns ``(eigenvalues, eigenvectors, (X_val − m) V, m)`` with ``m`` the fold's training mean.
    """
    validation = design[bounds[fold] : bounds[fold + 1]].astype(np.float64)
    n_train = design.shape[0] - validation.shape[0]
    # the whole design sums to zero, so the fold's training sum is minus its validation sum
    mean_train = -validation.sum(axis=0) / n_train
    fold_gram = gram - validation.T @ validation - n_train * np.outer(mean_train, mean_train)
    eigenvalues, eigenvectors = _eigh(fold_gram, n_train)
    eigenvectors = eigenvectors.astype(np.float32)
    projected = (validation - mean_train).astype(np.float32) @ eigenvectors
    return eigenvalues.astype(np.float32), eigenvectors, projected, mean_train.astype(np.float32)


def fold_solutions(
    eigh: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], alphas: np.ndarray, out: np.ndarray
) -> None:
    """Write ``(X_val − m) V diag(1 / (s + alpha)) Vᵀ`` for each alpha into ``out[a]``."""
    eigenvalues, eigenvectors, projected, _ = eigh
    for a, alpha in enumerate(alphas):
        np.matmul(projected * (1.0 / (eigenvalues + np.float32(alpha))), eigenvectors.T, out=out[a])


def alpha_blocks(n_alphas: int, n_blocks: int) -> list[slice]:
    """Split the alpha grid into at most ``n_blocks`` contiguous, non-empty blocks."""
    edges = np.linspace(0, n_alphas, min(n_alphas, max(1, n_blocks)) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def decompose_training(
    design: np.ndarray, test_design: np.ndarray, gram: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eigendecompose the whole training Gram ``gram`` of ``design``.

    Returns ``(eigenvalues, eigenvectors, X V, X_test V)`` for its kept directions, float32, ``X V``
    computed in float64 (:class:`RidgeFactors`).
    """
    eigenvalues, eigenvectors = _eigh(gram.copy(), design.shape[0])
    train_projection = (design.astype(np.float64) @ eigenvectors).astype(np.float32)
    eigenvectors = eigenvectors.astype(np.float32)
    return eigenvalues.astype(np.float32), eigenvectors, train_projection, test_design @ eigenvectors


def make_ridge_factors(
    x_train: np.ndarray,
    x_test: np.ndarray,
    bounds: Sequence[int] | np.ndarray,
    *,
    alphas: Sequence[float] | np.ndarray = (),
    standardize: bool = False,
    folds: bool = True,
) -> RidgeFactors:
    """Compute one model's ridge factors in this process (the decompositions in parallel threads).

    Parameters
    ----------
    x_train : ndarray of shape (n_train, k)
        Raw training features, rows in fold order (fold f = rows ``bounds[f]:bounds[f+1]``).
    x_test : ndarray of shape (n_test, k)
        Raw test features.
    bounds : sequence of int, shape (n_folds + 1,)
        Fold boundaries; ``bounds[0] == 0`` and ``bounds[-1] == n_train``.
    alphas : sequence of float
        The alpha grid the folds' solutions are computed for (K-fold CV only).
    standardize : bool
        Scale features to unit training variance after centering.
    folds : bool
        Decompose each fold (K-fold CV); False for GCV, which needs the whole training set only.

    Returns
    -------
    RidgeFactors
    """
    bounds = np.asarray(bounds, dtype=np.int64)
    design, test_design, offset, scale = standardize_features(x_train, x_test, standardize=standardize)
    gram = training_gram(design)
    # Decompositions run side by side, each on single-threaded LAPACK: multithreaded OpenBLAS
    # eigh degrades catastrophically when another process holds a core (2 s -> 13 s measured).
    # The per-alpha products then run as (fold, alpha block) tasks, so the cores finish together.
    alphas = np.asarray(alphas, dtype=np.float64)
    n_folds = len(bounds) - 1 if folds else 0
    with blas_threads(1), ThreadPoolExecutor(cpu_count()) as pool:
        training = pool.submit(decompose_training, design, test_design, gram)
        eighs = list(pool.map(lambda f: fold_eigh(design, bounds, f, gram), range(n_folds)))
        solutions = [np.empty((alphas.size, eigh[2].shape[0], design.shape[1]), dtype=np.float32) for eigh in eighs]
        jobs = [(f, block) for f in range(n_folds) for block in alpha_blocks(alphas.size, cpu_count())]
        list(pool.map(lambda job: fold_solutions(eighs[job[0]], alphas[job[1]], solutions[job[0]][job[1]]), jobs))
        fold_factors = tuple(FoldFactors(alphas, solutions[f], eighs[f][3]) for f in range(n_folds))
        full = training.result()
    return RidgeFactors(design, bounds, fold_factors, *full, offset, scale)


# --------------------------------------------------------------------------------------------
# 2. alpha selection (per voxel chunk)


def _select(scores: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best alpha index per voxel from (n_alphas, voxels) mean scores; ties go to the larger alpha."""
    best = np.argmax(scores + _TIE_SLOPE * np.log(alphas)[:, None], axis=0)
    return best, scores[best, np.arange(scores.shape[1])]


def solve_ridge_cv_eigh(
    factors: RidgeFactors, y: np.ndarray, alphas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Select each voxel's alpha by K-fold CV (validation R² averaged over folds).

    Parameters
    ----------
    factors : RidgeFactors
        With one :class:`FoldFactors` per fold, computed for ``alphas``.
    y : ndarray of shape (n_train, voxels), float32
        Training responses centered with their training means, rows in fold order.
    alphas : ndarray of shape (n_alphas,)
        The alpha grid.

    Returns
    -------
    best : ndarray of shape (voxels,), int
        Index of the chosen alpha.
    cv_score : ndarray of shape (voxels,), float64
        Mean validation R² at the chosen alpha.
    projection : ndarray of shape (r, voxels), float32
        ``(X V)ᵀ y``, the whole training set's ``Vᵀ Xᵀ y`` from its ``train_projection``, for the refit.
    """
    x, bounds = factors.design, factors.bounds
    n_train, n_voxels = y.shape
    if not factors.folds or not np.array_equal(factors.folds[0].alphas, alphas):
        raise ValueError("the factors' fold solutions were not computed for these alphas; pass them to make_ridge_factors")
    cross_folds = [x[bounds[f] : bounds[f + 1]].T @ y[bounds[f] : bounds[f + 1]] for f in range(len(bounds) - 1)]
    cross = np.sum(cross_folds, axis=0, dtype=np.float32)
    y_sum = y.sum(axis=0, dtype=np.float64)
    scores = np.zeros((len(alphas), n_voxels), dtype=np.float64)
    # two buffers for every (fold, alpha): no fresh pages per GEMM (Dask workers set
    # MALLOC_TRIM_THRESHOLD_, which makes glibc map and fault in each large temporary anew)
    buffers = np.empty((2, int(np.diff(bounds).max()), n_voxels), dtype=np.float32)
    for f, fold in enumerate(factors.folds):
        y_val = y[bounds[f] : bounds[f + 1]]
        n_fold_train = n_train - y_val.shape[0]
        y_val_sum = y_val.sum(axis=0, dtype=np.float64)
        train_mean = ((y_sum - y_val_sum) / n_fold_train).astype(np.float32)
        # 1. the fold's training cross-product, centered with the fold's training means
        fold_cross = np.subtract(cross, cross_folds[f], out=cross_folds[f])
        fold_cross -= n_fold_train * np.outer(fold.train_mean, train_mean)
        # 2. validation targets centered with the fold's training means (as its predictions are)
        target = y_val - train_mean
        ss_tot = np.einsum("ij,ij->j", y_val, y_val, dtype=np.float64) - y_val_sum**2 / y_val.shape[0]
        ss_target = np.einsum("ij,ij->j", target, target, dtype=np.float64)
        twice_target = np.multiply(target, 2, out=target)
        # 3. one GEMM per alpha. SS_res = ||t||² + Σ p (p − 2t), the alpha-dependent part summed in
        # float64: where a voxel's scores flatten (large alphas, predictions ≪ targets) the
        # alphas differ by less than the float32 rounding of ||t − p||², which then chose the
        # alpha (97% of alphas equal a float64 reference on noise voxels; 100% this way, for ~3%
        # of the chunk's time)
        prediction, shifted = buffers[0, : y_val.shape[0]], buffers[1, : y_val.shape[0]]
        for a in range(len(alphas)):
            np.matmul(fold.solutions[a], fold_cross, out=prediction)
            np.subtract(prediction, twice_target, out=shifted)
            ss_res = ss_target + np.einsum("ij,ij->j", prediction, shifted, dtype=np.float64)
            scores[a] += np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)
    best, cv_score = _select(scores / len(factors.folds), alphas)
    return best, cv_score, factors.train_projection.T @ y


def gcv_scores(
    eigenvalues: Any, squared_projection: Any, ss_tot: Any, n_train: int, alphas: Any, xp: Any = np
) -> Any:
    """GCV estimates of out-of-sample R² for each alpha and voxel, in float64 (numpy or torch).

    Parameters
    ----------
    eigenvalues : array of shape (r,), float64
        ``s``, the eigenvalues of the centered training Gram matrix that :func:`kept_directions`
        keeps (as the factors hold them).
    squared_projection : array of shape (r, voxels), float64
        ``b²``, the squares of ``b = Vᵀ Xᵀ y`` along those directions.
    ss_tot : array of shape (voxels,), float64
        ``‖y‖²`` of the centered training responses.
    n_train : int
        Training trials.
    alphas : array of shape (n_alphas,), float64
    xp : module
        ``numpy`` or ``torch`` (for ``where``); the arrays are of that kind.

    Returns
    -------
    array of shape (n_alphas, voxels), float64
        ``1 − GCV / (‖y‖² / n)``; ``-inf`` where no residual degree of freedom is left.

    Notes
    -----
    With ``c² = b²/s`` the squared coordinates of ``y`` on the left singular vectors,
    ``RSS = r₀ + Σ (alpha / (s + alpha))² c²`` where ``r₀ = ‖y‖² − Σ c²`` is the least-squares
    residual, 0 when the directions span the n − 1 dimensions of centered responses (r = n − 1).
    The alpha-dependent part is a float64 sum of positive terms. The equal form
    ``‖y‖² − Σ b² (s + 2 alpha)/(s + alpha)²`` cancels ‖y‖² against nearly all of the sum at
    small alphas when k ≥ n: the float32 rounding of ``b`` (≈ 1e-7 ‖y‖² in the sum) then
    exceeds the true RSS, is divided by ``(1 − df/n)²`` ≈ 0, and scored R² > 1 at alpha 0.01
    (50% of alphas equal a float64 hat-matrix GCV on noise voxels with 200 trials and 300
    features, 21% with 800; 100% this way; with fewer features than trials both give 100%).
    The null space's directions, left out (:func:`kept_directions`), are exact zeros: ``b²/s``
    there would be rounding noise of the size of ``‖y‖²``.
    """
    s = eigenvalues
    coordinates = squared_projection / s[:, None]
    spanned = s.shape[0] == n_train - 1  # then y lies in their span: r₀ = 0, not a difference of rounded sums
    residual = 0.0 * ss_tot if spanned else (ss_tot - coordinates.sum(0)).clip(min=0)
    alphas = alphas[:, None]
    rss = residual + (alphas / (s + alphas)) ** 2 @ coordinates
    residual_dof = 1.0 - (1.0 + (s / (s + alphas)).sum(1)[:, None]) / n_train
    fraction = rss / xp.where(ss_tot > 0, ss_tot, 1.0) / xp.where(residual_dof > 0, residual_dof, 1.0) ** 2
    return xp.where(residual_dof > 0, 1.0 - fraction, -xp.inf)


def solve_ridge_gcv_eigh(
    factors: RidgeFactors, y: np.ndarray, alphas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Select each voxel's alpha by generalized cross-validation (Golub, Heath & Wahba 1979).

    With the intercept counted as one degree of freedom, ``GCV(alpha) = n · RSS / (n − df)²``,
    ``df = 1 + Σ s/(s + alpha)``, and ``RSS = r₀ + Σ_i (alpha/(s_i + alpha))² b_i²/s_i`` where
    ``b = Vᵀ Xᵀ y`` and ``r₀`` is the least-squares residual (:func:`gcv_scores`, in float64):
    after the one projection, O(k · voxels) per alpha. The reported score is the GCV estimate
    of out-of-sample R², ``1 − GCV / (‖y‖² / n)``.

    Parameters and returns as :func:`solve_ridge_cv_eigh`.
    """
    projection = factors.train_projection.T @ y
    ss_tot = np.einsum("ij,ij->j", y, y, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    scores = gcv_scores(factors.eigenvalues.astype(np.float64), np.square(projection, dtype=np.float64), ss_tot,
                        y.shape[0], alphas)
    best, cv_score = _select(scores, alphas)
    return best, cv_score, projection


Solver = Callable[[RidgeFactors, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

#: Alpha-selection solvers by the name of the ``cv`` strategy.
RIDGE_SOLVERS: dict[str, Solver] = {"kfold": solve_ridge_cv_eigh, "gcv": solve_ridge_gcv_eigh}


# --------------------------------------------------------------------------------------------
# 3. refit and scores


def _shrunk_weights(factors: RidgeFactors, projection: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Eigenbasis ridge weights ``diag(1/(s + alpha_v)) Vᵀ Xᵀ y`` per voxel, shape (r, voxels)."""
    return projection / (factors.eigenvalues[:, None] + alpha.astype(np.float32)[None, :])


def _center(y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = y_train.mean(axis=0, dtype=np.float64)
    return (y_train - mean).astype(np.float32), mean


def fit_ridge_chunk(
    factors: RidgeFactors,
    y_train: np.ndarray,
    y_test: np.ndarray,
    alphas: np.ndarray,
    solver: str = "kfold",
) -> dict[str, np.ndarray]:
    """Select alphas, refit on all training rows and score on the test rows, for a voxel chunk.

    Parameters
    ----------
    factors : RidgeFactors
        From :func:`make_ridge_factors`.
    y_train : ndarray of shape (n_train, voxels)
        Training responses, rows in the factors' fold order.
    y_test : ndarray of shape (n_test, voxels)
        Test responses, rows in the factors' test order.
    alphas : ndarray of shape (n_alphas,)
        Alpha grid.
    solver : {"kfold", "gcv"}
        Key of :data:`RIDGE_SOLVERS`.

    Returns
    -------
    dict of str to ndarray
        ``alpha``, ``cv_r2`` (selection score at that alpha), ``r2`` and ``r`` (test set), each of
        shape (voxels,), and ``prediction`` of shape (n_test, voxels), float32.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    y_centered, y_mean = _center(y_train)
    best, cv_score, projection = RIDGE_SOLVERS[solver](factors, y_centered, alphas)
    alpha = alphas[best]
    prediction = factors.test_projection @ _shrunk_weights(factors, projection, alpha)
    prediction += y_mean.astype(np.float32)
    return {
        "alpha": alpha,
        "cv_r2": cv_score,
        "r2": r2_score(y_test, prediction),
        "r": pearson_r(y_test, prediction),
        "prediction": prediction,
    }


def predict_ridge(factors: RidgeFactors, y_train: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Test-set predictions, shape (n_test, voxels), of the ridge refit with per-voxel ``alpha``."""
    y_centered, y_mean = _center(y_train)
    projection = factors.train_projection.T @ y_centered
    prediction = factors.test_projection @ _shrunk_weights(factors, projection, np.asarray(alpha))
    return prediction + y_mean.astype(np.float32)


def ridge_coefficients(
    factors: RidgeFactors, y_train: np.ndarray, alpha: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Refit coefficients on the raw feature scale: ``y ≈ x @ coef + intercept``.

    Returns ``coef`` of shape (k, voxels) and ``intercept`` of shape (voxels,).
    """
    y_centered, y_mean = _center(y_train)
    projection = factors.train_projection.T @ y_centered
    coef = (factors.eigenvectors @ _shrunk_weights(factors, projection, np.asarray(alpha))) / factors.scale[:, None]
    return coef, y_mean - factors.offset @ coef


def ridge_flops(n_train: int, n_test: int, n_features: int, n_voxels: int, n_alphas: int, n_folds: int) -> float:
    """Floating-point operations of :func:`fit_ridge_chunk` (K-fold) for ``n_voxels`` voxels.

    Counts the GEMMs (2·m·n·k each): the per-fold cross-products (every training row once), one
    validation GEMM per alpha and fold, and the refit's projection ``(X V)ᵀ y`` and test
    prediction, over ``r = min(k, n_train − 1)`` directions. Element-wise work and the per-model
    decompositions are left out.
    """
    k, r = n_features, min(n_features, n_train - 1)
    per_voxel = 2 * n_train * k + n_alphas * 2 * n_train * k + 2 * n_train * r + 2 * n_test * r
    return float(per_voxel) * n_voxels
