"""Torch versions of the ridge kernels of :mod:`neurotask.encoding.ridge` (CPU or CUDA).

The same algorithms, step for step: float64 Gram matrices and eigendecompositions
(``torch.linalg.eigh`` in float64), float32 GEMMs (TF32 as the caller sets it, off by default:
:func:`neurotask.backend.tf32`), the same fold cross-product identities, the same tie rule.
The factors are :class:`~neurotask.encoding.ridge.RidgeFactors` whose arrays are torch tensors
on the device (``bounds``, ``offset`` and ``scale`` stay numpy); the chunk kernel returns numpy
scores, computed on the host by :mod:`neurotask.encoding.scoring` like the numpy path's.

Torch is imported by the functions, not at module import.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from neurotask.encoding.ridge import _TIE_SLOPE, FoldFactors, RidgeFactors, gcv_scores, kept_directions
from neurotask.encoding.scoring import pearson_r, r2_score

__all__ = ["bytes_per_voxel", "factors_on_device", "fit_ridge_chunk", "make_ridge_factors", "predict_ridge"]

#: Per process: numpy factors already copied to a device, by ``(id(factors), device)``.
_ON_DEVICE: dict[tuple[int, str], tuple[weakref.ref, RidgeFactors]] = {}
# the chunk threads of one fit share the cache: one copies a model's factors, the others wait for it
_ON_DEVICE_LOCK = threading.Lock()


def _eigh(gram: Any, n_train: int) -> tuple[Any, Any]:
    """float64 eigendecomposition; the kept directions (``kept_directions``), float64 (as ridge._eigh)."""
    import torch

    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    kept = kept_directions(eigenvalues.clamp(min=0), n_train)
    return eigenvalues[kept], eigenvectors[:, kept]


def make_ridge_factors(
    x_train: np.ndarray,
    x_test: np.ndarray,
    bounds: Sequence[int] | np.ndarray,
    *,
    alphas: Sequence[float] | np.ndarray = (),
    standardize: bool = False,
    folds: bool = True,
    device: str = "cpu",
) -> RidgeFactors:
    """One model's ridge factors on ``device`` (see :func:`neurotask.encoding.ridge.make_ridge_factors`).

    Returns
    -------
    RidgeFactors
        ``design``, ``eigenvalues``, ``eigenvectors``, ``train_projection``, ``test_projection`` and the folds'
        ``solutions`` (one (n_alphas, n_val, k) float32 tensor per fold) and ``train_mean`` as
        tensors on ``device``.
    """
    import torch

    bounds = np.asarray(bounds, dtype=np.int64)
    train64 = torch.as_tensor(np.asarray(x_train), device=device).to(torch.float64)
    test64 = torch.as_tensor(np.asarray(x_test), device=device).to(torch.float64)
    offset = train64.mean(dim=0)
    scale = torch.ones_like(offset)
    if standardize:
        std = train64.std(dim=0, unbiased=False)
        scale = torch.where(std > 0, std, torch.ones_like(std))
    design = ((train64 - offset) / scale).to(torch.float32)
    test_design = ((test64 - offset) / scale).to(torch.float32)
    design64 = design.to(torch.float64)
    gram = design64.T @ design64
    eigenvalues, eigenvectors = _eigh(gram, design.shape[0])
    train_projection = (design64 @ eigenvectors).to(torch.float32)  # in float64, as ridge.decompose_training
    eigenvalues, eigenvectors = eigenvalues.to(torch.float32), eigenvectors.to(torch.float32)
    alphas = np.asarray(alphas, dtype=np.float64)
    fold_factors = []
    for f in range(len(bounds) - 1 if folds else 0):
        validation = design64[bounds[f] : bounds[f + 1]]
        n_train = design.shape[0] - validation.shape[0]
        mean_train = -validation.sum(dim=0) / n_train
        fold_values, fold_vectors = _eigh(gram - validation.T @ validation - n_train * torch.outer(mean_train,
                                                                                                   mean_train), n_train)
        fold_values, fold_vectors = fold_values.to(torch.float32), fold_vectors.to(torch.float32)
        projected = (validation - mean_train).to(torch.float32) @ fold_vectors
        solutions = torch.stack([(projected * (1.0 / (fold_values + np.float32(alpha)))) @ fold_vectors.T
                                 for alpha in alphas])
        fold_factors.append(FoldFactors(alphas, solutions, mean_train.to(torch.float32)))
    return RidgeFactors(design, bounds, tuple(fold_factors), eigenvalues, eigenvectors, train_projection,
                        test_design @ eigenvectors, offset.cpu().numpy(), scale.cpu().numpy())


def factors_to_numpy(factors: RidgeFactors) -> RidgeFactors:
    """Torch factors as numpy (to travel between Dask workers)."""
    def host(x: Any) -> np.ndarray:
        return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)

    folds = tuple(FoldFactors(f.alphas, host(f.solutions), host(f.train_mean)) for f in factors.folds)
    return RidgeFactors(host(factors.design), factors.bounds, folds, host(factors.eigenvalues),
                        host(factors.eigenvectors), host(factors.train_projection), host(factors.test_projection),
                        factors.offset, factors.scale)


def factors_on_device(factors: RidgeFactors, device: str) -> RidgeFactors:
    """Numpy factors copied to ``device`` once per process (cached while ``factors`` lives)."""
    with _ON_DEVICE_LOCK:
        for key in [k for k, (ref, _) in _ON_DEVICE.items() if ref() is None]:
            del _ON_DEVICE[key]
        key = (id(factors), device)
        cached = _ON_DEVICE.get(key)
        if cached is not None and cached[0]() is factors:
            return cached[1]
        moved = _copy_to(factors, device)
        _ON_DEVICE[key] = (weakref.ref(factors), moved)
        return moved


def _copy_to(factors: RidgeFactors, device: str) -> RidgeFactors:
    import torch

    def put(x: Any) -> Any:
        return torch.as_tensor(x, device=device)

    folds = tuple(FoldFactors(f.alphas, put(np.stack(list(f.solutions)) if isinstance(f.solutions, list)
                                            else f.solutions), put(f.train_mean)) for f in factors.folds)
    return RidgeFactors(put(factors.design), factors.bounds, folds, put(factors.eigenvalues),
                        put(factors.eigenvectors), put(factors.train_projection), put(factors.test_projection),
                        factors.offset, factors.scale)


def bytes_per_voxel(n_trials: int, n_features: int, n_folds: int, n_alphas: int) -> int:
    """Device bytes one voxel column takes in :func:`fit_ridge_chunk` (with room for temporaries)."""
    return 2 * 4 * (3 * n_trials + (n_folds + 5) * n_features + 4 * n_alphas)


def _select(scores: Any, alphas: Any) -> tuple[Any, Any]:
    import torch

    best = torch.argmax(scores + _TIE_SLOPE * torch.log(alphas)[:, None], dim=0)
    return best, scores.gather(0, best[None])[0]


def _solve_kfold(factors: RidgeFactors, y: Any, alphas: Any) -> tuple[Any, Any, Any]:
    """As :func:`neurotask.encoding.ridge.solve_ridge_cv_eigh` (validation R² averaged over folds)."""
    import torch

    x, bounds = factors.design, factors.bounds
    n_train = y.shape[0]
    if not factors.folds or not np.array_equal(factors.folds[0].alphas, alphas.cpu().numpy()):
        raise ValueError("the factors' fold solutions were not computed for these alphas; pass them to make_ridge_factors")
    cross_folds = [x[bounds[f] : bounds[f + 1]].T @ y[bounds[f] : bounds[f + 1]] for f in range(len(bounds) - 1)]
    cross = torch.stack(cross_folds).sum(dim=0)
    y_sum = y.sum(dim=0, dtype=torch.float64)
    scores = torch.zeros((alphas.shape[0], y.shape[1]), dtype=torch.float64, device=y.device)
    for f, fold in enumerate(factors.folds):
        y_val = y[bounds[f] : bounds[f + 1]]
        n_fold_train = n_train - y_val.shape[0]
        y_val_sum = y_val.sum(dim=0, dtype=torch.float64)
        train_mean = ((y_sum - y_val_sum) / n_fold_train).to(torch.float32)
        fold_cross = cross - cross_folds[f] - n_fold_train * torch.outer(fold.train_mean, train_mean)
        target = y_val - train_mean
        y_val64 = y_val.to(torch.float64)
        ss_tot = (y_val64 * y_val64).sum(dim=0) - y_val_sum**2 / y_val.shape[0]
        safe = torch.where(ss_tot > 0, ss_tot, torch.ones_like(ss_tot))
        ss_target = (target.to(torch.float64) ** 2).sum(dim=0)
        twice_target = 2 * target
        for a in range(alphas.shape[0]):  # SS_res = ||t||² + Σ p (p − 2t), as the numpy kernel
            prediction = fold.solutions[a] @ fold_cross
            ss_res = ss_target + (prediction * (prediction - twice_target)).to(torch.float64).sum(dim=0)
            scores[a] += torch.where(ss_tot > 0, 1.0 - ss_res / safe, torch.zeros_like(ss_res))
    best, cv_score = _select(scores / len(factors.folds), alphas)
    return best, cv_score, factors.train_projection.T @ y


def _solve_gcv(factors: RidgeFactors, y: Any, alphas: Any) -> tuple[Any, Any, Any]:
    """As :func:`neurotask.encoding.ridge.solve_ridge_gcv_eigh`, through the same ``gcv_scores``."""
    import torch

    projection = factors.train_projection.T @ y
    y64 = y.to(torch.float64)
    scores = gcv_scores(factors.eigenvalues.to(torch.float64), projection.to(torch.float64) ** 2,
                        (y64 * y64).sum(dim=0), y.shape[0], alphas, xp=torch)
    best, cv_score = _select(scores, alphas)
    return best, cv_score, projection


_SOLVERS = {"kfold": _solve_kfold, "gcv": _solve_gcv}


def _center(y_train: Any) -> tuple[Any, Any]:
    import torch

    mean = y_train.to(torch.float64).mean(dim=0)
    return (y_train.to(torch.float64) - mean).to(torch.float32), mean


def fit_ridge_chunk(
    factors: RidgeFactors, y_train: Any, y_test: np.ndarray, alphas: np.ndarray, solver: str = "kfold"
) -> dict[str, np.ndarray]:
    """As :func:`neurotask.encoding.ridge.fit_ridge_chunk`, with ``factors`` and ``y_train`` on the device.

    Parameters
    ----------
    factors : RidgeFactors
        Tensors on the device (:func:`make_ridge_factors` or :func:`factors_on_device`).
    y_train : torch.Tensor of shape (n_train, voxels), float32
        Training responses on the device, rows in the factors' fold order.
    y_test : ndarray of shape (n_test, voxels)
        Test responses on the host (scored there).
    alphas : ndarray of shape (n_alphas,)
    solver : {"kfold", "gcv"}

    Returns
    -------
    dict of str to ndarray
        As the numpy kernel: ``alpha``, ``cv_r2``, ``r2``, ``r`` (voxels,), ``prediction`` (n_test, voxels).
    """
    import torch

    alphas_t = torch.as_tensor(np.asarray(alphas, dtype=np.float64), device=y_train.device)
    y_centered, y_mean = _center(y_train)
    best, cv_score, projection = _SOLVERS[solver](factors, y_centered, alphas_t)
    alpha = alphas_t[best]
    weights = projection / (factors.eigenvalues[:, None] + alpha.to(torch.float32)[None, :])
    prediction = (factors.test_projection @ weights + y_mean.to(torch.float32)).cpu().numpy()
    return {
        "alpha": alpha.cpu().numpy(),
        "cv_r2": cv_score.cpu().numpy(),
        "r2": r2_score(y_test, prediction),
        "r": pearson_r(y_test, prediction),
        "prediction": prediction,
    }


def predict_ridge(factors: RidgeFactors, y_train: Any, alpha: np.ndarray) -> np.ndarray:
    """As :func:`neurotask.encoding.ridge.predict_ridge`, on the device; returns numpy (n_test, voxels)."""
    import torch

    y_centered, y_mean = _center(y_train)
    projection = factors.train_projection.T @ y_centered
    alpha_t = torch.as_tensor(np.asarray(alpha, dtype=np.float32), device=y_train.device)
    prediction = factors.test_projection @ (projection / (factors.eigenvalues[:, None] + alpha_t[None, :]))
    return (prediction + y_mean.to(torch.float32)).cpu().numpy()
