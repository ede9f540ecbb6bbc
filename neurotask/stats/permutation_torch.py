"""The shuffle-test permutation kernel of :mod:`neurotask.stats.permutation` on a torch device.

The same arithmetic as the numpy kernel, in the same order: per permutation block, the cross
products ``c[p, m, v] = Σ_t a[m, t, v] · b[π_p(t), v]`` are accumulated trial by trial
(``c += b[π(t)] · a[t]``, one float32 multiply and one add per trial, never fused or reordered),
and exceedances are counted on them (the statistic only for the observed value and maxima), so
a voxel's null values depend neither on the chunking nor on the voxel batch, and equal the numpy
kernel's (which sums rows in trial order too). Exceedance counts and the per-permutation
maxima are reduced on the device; voxel batches are sized to the device's free memory
(:func:`neurotask.backend.voxel_batch`).

The refit null (:func:`refit_counts`): per permutation, one row gather of the training
responses and one float32 GEMM per distinct alpha (``H_α @ y_train[π]``), scored in float64 like
the numpy kernel (its GEMMs round like any BLAS: p-values within float32 rounding of the
numpy path's). Torch is imported by the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurotask import backend as backends

__all__ = ["refit_counts", "shuffle_counts"]


def _cross_products(perms: Any, a: Any, b: Any) -> Any:
    """``(permutation, model, voxel)`` cross products, summed over trials in trial order."""
    import torch

    out = torch.zeros((perms.shape[0], a.shape[0], a.shape[2]), dtype=torch.float32, device=a.device)
    for t in range(perms.shape[1]):
        out += b[perms[:, t]][:, None, :] * a[None, :, t, :]
    return out


def _statistic(cross: Any, offset: Any, statistic: str) -> Any:
    """The statistic from cross products, as the numpy kernel's ``_shuffle_statistic``."""
    return cross if statistic == "r" else 2 * cross + offset


def shuffle_counts(
    perms: np.ndarray, a: np.ndarray, b: np.ndarray, offset: np.ndarray, statistic: str, block: int, fwer: bool,
    device: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Observed statistic, exceedance counts and (with ``fwer``) per-permutation maxima, on ``device``.

    Parameters
    ----------
    perms : ndarray of shape (permutation, trial), int
    a : ndarray of shape (model, trial, voxel), float32
    b : ndarray of shape (trial, voxel), float32
    offset : ndarray of shape (model, voxel), float32
        As prepared by the numpy path (statistic = scale · cross + offset).
    statistic : {"r", "r2"}
    block : int
        Permutations per step.
    fwer : bool
        Also return the max over voxels per (permutation, model).
    device : str
        A resolved torch device.

    Returns
    -------
    observed : ndarray of shape (model, voxel), float32
    exceed : ndarray of shape (model, voxel), int64
    maxima : ndarray of shape (permutation, model), float32, or None
    """
    import torch

    n_models, n_trials, n_voxels = a.shape
    per_voxel = 4 * (3 * block * n_models + (n_models + 1) * n_trials + 4 * n_models)
    batch = backends.voxel_batch(n_voxels, per_voxel, device)
    perms_t = torch.as_tensor(perms, device=device)
    identity = torch.arange(n_trials, device=device)[None]
    observed = np.empty((n_models, n_voxels), dtype=np.float32)
    exceed = np.empty((n_models, n_voxels), dtype=np.int64)
    maxima = torch.full((perms.shape[0], n_models), -np.inf, device=device) if fwer else None
    for start in range(0, n_voxels, batch):
        cols = slice(start, min(start + batch, n_voxels))
        a_t = torch.as_tensor(np.ascontiguousarray(a[:, :, cols]), device=device)
        b_t = torch.as_tensor(np.ascontiguousarray(b[:, cols]), device=device)
        offset_t = torch.as_tensor(np.ascontiguousarray(offset[:, cols]), device=device)
        seen = _cross_products(identity, a_t, b_t)[0]
        count = torch.zeros(seen.shape, dtype=torch.int64, device=device)
        for p0 in range(0, perms.shape[0], block):
            cross = _cross_products(perms_t[p0:p0 + block], a_t, b_t)
            count += (cross >= seen[None]).sum(dim=0)  # counted on the cross products, as numpy
            if maxima is not None:  # NaN voxels ignored, as numpy's fmax
                null = _statistic(cross, offset_t, statistic)
                top = torch.where(torch.isnan(null), torch.full_like(null, -np.inf), null).amax(dim=2)
                maxima[p0:p0 + block] = torch.maximum(maxima[p0:p0 + block], top)
        observed[:, cols] = _statistic(seen, offset_t, statistic).cpu().numpy()
        exceed[:, cols] = count.cpu().numpy()
    return observed, exceed, None if maxima is None else maxima.cpu().numpy()


def _score(y_test: Any, prediction: Any, statistic: str) -> Any:
    """Test-set r or R² per voxel in float64 (as :mod:`neurotask.encoding.scoring`), NaN where undefined."""
    import torch

    if statistic == "r":
        a = y_test - y_test.mean(dim=0)
        b = prediction - prediction.mean(dim=0)
        denominator = torch.sqrt((a * a).sum(dim=0) * (b * b).sum(dim=0))
        return torch.where(denominator > 0, (a * b).sum(dim=0) / denominator, torch.full_like(denominator, np.nan))
    centered = y_test - y_test.mean(dim=0)
    ss_tot = (centered * centered).sum(dim=0)
    residual = y_test - prediction
    return torch.where(ss_tot > 0, 1.0 - (residual * residual).sum(dim=0) / ss_tot, torch.full_like(ss_tot, np.nan))


def refit_counts(
    perms: np.ndarray, hats: np.ndarray, alpha_index: np.ndarray, y_train: np.ndarray, y_test: np.ndarray,
    statistic: str, fwer: bool, device: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Observed statistic, exceedance counts and maxima of the refit null for one model, on ``device``.

    Parameters
    ----------
    perms : ndarray of shape (permutation, training trial), int
    hats : ndarray of shape (alpha, test trial, training trial), float32
        The ridge operators of the distinct alphas.
    alpha_index : ndarray of shape (voxel,), int
        Each voxel's alpha, as a row of ``hats``.
    y_train, y_test : ndarray of shape (trial, voxel), float32
    statistic : {"r", "r2"}
    fwer : bool
    device : str

    Returns
    -------
    observed : ndarray of shape (1, voxel), float32
    exceed : ndarray of shape (1, voxel), int64
    maxima : ndarray of shape (permutation, 1), float32, or None
    """
    import torch

    order = np.argsort(alpha_index, kind="stable")
    bounds = np.searchsorted(alpha_index[order], np.arange(hats.shape[0] + 1))
    hats_t = torch.as_tensor(hats, device=device)
    train = torch.as_tensor(np.ascontiguousarray(y_train[:, order], dtype=np.float32), device=device)
    test = torch.as_tensor(y_test[:, order], device=device).to(torch.float64)
    train_mean = train.to(torch.float64).mean(dim=0)

    def null(perm: Any) -> Any:
        permuted = train[perm]
        prediction = torch.empty((hats.shape[1], train.shape[1]), dtype=torch.float32, device=device)
        for index in range(hats.shape[0]):
            cols = slice(int(bounds[index]), int(bounds[index + 1]))
            if cols.start < cols.stop:
                prediction[:, cols] = hats_t[index] @ permuted[:, cols]
        return _score(test, train_mean + prediction, statistic).to(torch.float32)

    seen = null(torch.arange(perms.shape[1], device=device))
    count = torch.zeros(seen.shape, dtype=torch.int64, device=device)
    maxima = np.full((perms.shape[0], 1), -np.inf, dtype=np.float32) if fwer else None
    for p, perm in enumerate(torch.as_tensor(perms, device=device)):
        values = null(perm)
        count += values >= seen
        if maxima is not None and not torch.isnan(values).all():
            maxima[p, 0] = float(values[~torch.isnan(values)].max())
    inverse = np.argsort(order)
    return (seen.cpu().numpy()[inverse][None], count.cpu().numpy()[inverse][None], maxima)
