"""The RSA kernels of :mod:`neurotask.rsa._kernels` on a torch device (CPU or CUDA).

The same algorithm with the same precision choices as the numpy kernels:

* the condensed RDM in float64, by GEMMs over strips of rows against the images from the
  strip's first row on (euclidean on column-centered features, correlation and cosine on
  normalized rows), each row's upper triangle kept in scipy ``squareform`` order;
* the per-pair reduction: ties averaged and the ranks doubled and centered as int32 for
  Spearman (``2·rank − (P + 1)``), dense int32 ranks for tau-a (one sort and one tie scan on the
  device), the dissimilarities rounded to float32 with their float64 mean for Pearson;
* the model × model cross products ``Σ (v_a − o_a)(v_b − o_b)`` summed in float64 GEMMs over
  blocks of pairs.

Device memory stays bounded: strips hold at most ``batch`` pairs (at least one row), and the
cross products stream ``batch`` pairs of every model's kept vector (which stays in host memory)
at a time, ``batch`` sized to half the device's free memory (:func:`neurotask.backend.voxel_batch`)
or capped by the caller. One model's whole RDM is on the device while it is ranked (~40 bytes
per pair: 480 MB at 4916 images). Torch is imported by the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurotask import backend as backends
from neurotask.rsa._kernels import (
    _CANCELLATION,
    _PAIR_BLOCK,
    _STRIP_ROWS,
    TIE_RTOL,
    UnusableFeatures,
    _check_finite_and_varying,
)

__all__ = ["condensed_rdm", "cross_products", "model_vector"]

#: Device bytes per strip element: the float64 products, the euclidean temporary, the mask, the kept copy.
_STRIP_BYTES = 32
#: Device bytes per pair and model in a cross-product block: the float64 block and its upload.
_BLOCK_BYTES = 12


def _pairs_per_step(n_pairs: int, bytes_per_pair: int, device: str, device_batch: int | None, cpu_cap: int) -> int:
    """Pairs per device step: half the free memory on CUDA, ``cpu_cap`` on the CPU, at most ``device_batch``."""
    limit = cpu_cap if device == "cpu" else None
    if device_batch is not None:
        limit = device_batch if limit is None else min(limit, device_batch)
    return backends.voxel_batch(n_pairs, bytes_per_pair, device, limit=limit)


def condensed_rdm(x: np.ndarray, method: str, device: str, device_batch: int | None = None, *,
                  merge: bool = True) -> Any:
    """Upper triangle (scipy ``squareform`` order) of one model's RDM, a float64 tensor on ``device``.

    ``merge``: values equal up to rounding made equal (:func:`merge_ties`), as numpy's.

    ``x`` (image, feature) must already be checked (:func:`~neurotask.rsa._kernels._check_finite_and_varying`).
    """
    import torch

    # 1. rows in the form whose inner products give the dissimilarity (float64, as numpy)
    y = torch.as_tensor(np.asarray(x), device=device).to(torch.float64)
    if method == "euclidean":
        y = y - y.mean(dim=0)
        norms = torch.einsum("ij,ij->i", y, y)
    else:
        if method == "correlation":
            y = y - y.mean(dim=1, keepdim=True)
        y = y / torch.sqrt(torch.einsum("ij,ij->i", y, y))[:, None]
    # 2. strips of rows, each against the images from its first row on, bounded in pairs
    n = y.shape[0]
    n_pairs = n * (n - 1) // 2
    rows = max(1, min(_STRIP_ROWS, _pairs_per_step(n * n, _STRIP_BYTES, device, device_batch, n * n) // max(1, n)))
    out = torch.empty(n_pairs, dtype=torch.float64, device=device)
    start = 0
    for first in range(0, n - 1, rows):
        strip = y[first : first + rows] @ y[first:].T
        count = strip.shape[0]
        upper = torch.arange(n - first, device=device)[None, :] > torch.arange(count, device=device)[:, None]
        if method == "euclidean":
            values = torch.sqrt(_squared_distances(y, norms, first, strip, upper)[upper].clamp_min(0.0))
        else:
            values = 1.0 - strip[upper]
        out[start : start + values.numel()] = values
        start += values.numel()
    # 3. one value for dissimilarities equal up to the GEMMs' rounding (as numpy)
    return merge_ties(out) if merge else out


def _squared_distances(y: Any, norms: Any, first: int, strip: Any, upper: Any) -> Any:
    """A strip's squared euclidean distances from the Gram identity, recomputed from the
    differences where it cancels (as :func:`neurotask.rsa._kernels._squared_distances`)."""
    import torch

    scale = norms[first : first + strip.shape[0], None] + norms[None, first:]
    squared = scale - 2.0 * strip
    rows, cols = torch.nonzero(upper & (squared < _CANCELLATION * scale), as_tuple=True)
    if rows.numel():
        differences = y[first + cols] - y[first + rows]
        squared[rows, cols] = torch.einsum("ij,ij->i", differences, differences)
    return squared


def merge_ties(v: Any) -> Any:
    """Runs of values closer than ``TIE_RTOL · max |v|`` set to their smallest, in place
    (:func:`neurotask.rsa._kernels.merge_ties` on the device)."""
    import torch

    if v.numel() < 2:
        return v
    position, first = _sorted_groups(v, _tie_tolerance(v))
    ordered = v[position]
    v[position] = ordered[first][torch.cumsum(first, 0) - 1]
    return v


def _tie_tolerance(v: Any) -> float:
    return TIE_RTOL * float(v.abs().max()) if v.numel() else 0.0


def _sorted_groups(v: Any, tol: float = 0.0) -> tuple[Any, Any]:
    """Sorting positions of ``v`` and which sorted element starts a group of equal values (within ``tol``)."""
    import torch

    values, position = torch.sort(v)
    first = torch.ones(v.numel(), dtype=torch.bool, device=v.device)
    if tol > 0:
        torch.gt(values[1:] - values[:-1], tol, out=first[1:])
    else:
        torch.ne(values[1:], values[:-1], out=first[1:])
    return position, first


def _check_rank_range(v: Any) -> None:
    """Ranks are int32: at most 2**31 − 1 pairs (merging ties, in int64 positions, has no such limit)."""
    if v.numel() >= 2**31:
        raise ValueError(f"{v.numel()} pairs exceed the int32 rank range (at most ~65,000 images)")


def doubled_centered_ranks(v: Any, tol: float = 0.0) -> Any:
    """``2·rankdata(v) − (P + 1)`` as an int32 tensor (ties, within ``tol``, averaged, doubled to be integers)."""
    import torch

    _check_rank_range(v)
    position, first = _sorted_groups(v, tol)
    p = v.numel()
    starts = torch.nonzero(first).squeeze(1)
    ends = torch.empty_like(starts)
    ends[:-1], ends[-1] = starts[1:], p
    # the group at sorted positions start..end-1 has the rank (start + 1 + end) / 2
    doubled = (starts + ends - p).to(torch.int32)
    out = torch.empty(p, dtype=torch.int32, device=v.device)
    out[position] = doubled[torch.cumsum(first, 0) - 1]
    return out


def dense_ranks(v: Any, tol: float = 0.0) -> Any:
    """``rankdata(v, method="dense")`` as an int32 tensor (ties within ``tol``)."""
    import torch

    _check_rank_range(v)
    position, first = _sorted_groups(v, tol)
    out = torch.empty(v.numel(), dtype=torch.int32, device=v.device)
    out[position] = torch.cumsum(first, 0, dtype=torch.int32)
    return out


def _reduce(rdm: Any, compare: str) -> tuple[np.ndarray, float]:
    """The kept host vector and offset of one condensed RDM (as :data:`~neurotask.rsa._kernels._TRANSFORMS`)."""
    import torch

    if compare == "spearman":
        return doubled_centered_ranks(rdm, _tie_tolerance(rdm)).cpu().numpy(), 0.0
    if compare == "tau-a":
        return dense_ranks(rdm, _tie_tolerance(rdm)).cpu().numpy(), 0.0
    return rdm.to(torch.float32).cpu().numpy(), float(rdm.mean())


def model_vector(
    x: np.ndarray, method: str, compare: str, images: np.ndarray, device: str, device_batch: int | None = None,
) -> tuple[np.ndarray, float] | UnusableFeatures:
    """One model's kept vector and offset computed on ``device``, or the reason its features are unusable."""
    x = np.asarray(x)
    try:
        _check_finite_and_varying(x, method, "", images)
    except UnusableFeatures as problem:
        return problem
    return _reduce(condensed_rdm(x, method, device, device_batch, merge=False), compare)


def cross_products(vectors: np.ndarray, offsets: np.ndarray, device: str, device_batch: int | None = None) -> np.ndarray:
    """``Σ (v_a − o_a)(v_b − o_b)`` over pairs for all model pairs: float64 GEMMs on ``device``."""
    import torch

    m, p = vectors.shape
    batch = _pairs_per_step(p, _BLOCK_BYTES * m, device, device_batch, _PAIR_BLOCK)
    shift = torch.as_tensor(np.asarray(offsets, dtype=np.float64), device=device)[:, None]
    total = torch.zeros((m, m), dtype=torch.float64, device=device)
    for start in range(0, p, batch):
        block = torch.as_tensor(vectors[:, start : start + batch], device=device).to(torch.float64) - shift
        total += block @ block.T
    return total.cpu().numpy()
