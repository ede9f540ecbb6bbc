"""Numpy kernels of RSA: condensed RDMs, exact tie-averaged ranks, cross products, Kendall tau-a.

They know nothing of xarray or Dask; :mod:`neurotask.rsa.rdms` and :mod:`neurotask.rsa.similarity`
orchestrate them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.stats

try:  # the O(P log P) discordant-pair count behind scipy.stats.kendalltau (as rsatoolbox uses it)
    from scipy.stats._stats import _kendall_dis
except ImportError:  # a private name: if scipy moves it, fall back to the public tau-b (slower)
    _kendall_dis = None

_STRIP_ROWS = 512  # image rows per GEMM strip of an RDM (4916 images: 20 MB per strip)
_PAIR_BLOCK = 1 << 18  # pairs per float64 block in the final cross products (25 models: 52 MB)
_TAU_THREADS = 2  # each tau-a pair holds ~40 bytes per image pair (500 MB at 4916 images)
#: Dissimilarities closer than this (relative to the largest) are one value: GEMM-based RDMs put
#: mathematically equal ones (a one-hot category model, integer features) up to ~f·eps ≈ 5e-13
#: apart at f = 2048 features, which would break their ties (tau-a 0.63 off, Spearman 0.01 off
#: rsatoolbox on a hand-built category model); scipy's pdist keeps them equal.
TIE_RTOL = 2.0**-42
#: Squared euclidean distances below this fraction of the two norms are recomputed from the
#: differences: the Gram identity cancels there (identical images came out ~1e-8, not 0).
_CANCELLATION = 2.0**-20


class UnusableFeatures(ValueError):
    """Features of one model for which the dissimilarity is undefined (NaN, constant or zero rows).

    ``problem`` says what and for which images; the message adds the model when it is known.
    """

    def __init__(self, problem: str, model: str = "") -> None:
        self.problem = problem
        super().__init__(f"features of model {model!r}: {problem}" if model else f"features: {problem}")

    def for_model(self, model: str) -> UnusableFeatures:
        """The same problem, named for ``model``."""
        return UnusableFeatures(self.problem, model)


def _check_finite_and_varying(x: np.ndarray, method: str, model: str, images: np.ndarray) -> None:
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise UnusableFeatures(
            f"NaN/inf for {int(bad.sum())} images, e.g. {list(images[bad][:5])}; "
            "drop those images (subset=) or fix the features",
            model,
        )
    if method == "correlation":
        degenerate = x.min(axis=1) == x.max(axis=1)
        what = "constant features (zero variance: the correlation distance is undefined)"
    elif method == "cosine":
        degenerate = ~x.any(axis=1)
        what = "all-zero features (zero norm: the cosine distance is undefined)"
    else:
        return
    if degenerate.any():
        raise UnusableFeatures(
            f"{what} for {int(degenerate.sum())} images, e.g. {list(images[degenerate][:5])}; "
            "drop them with subset= or use rdm_method='euclidean'",
            model,
        )


def _condensed_rdm(
    x: np.ndarray, method: str, model: str = "", images: np.ndarray | None = None, *, merge: bool = True
) -> np.ndarray:
    """Upper triangle (scipy ``squareform`` order) of one model's RDM, float64, from (image, feature).

    Computed in float64 like rsatoolbox and scipy: float32 products would reorder near-equal
    dissimilarities and move a Spearman correlation by ~1e-5 on small data. ``merge``: equal up
    to rounding made equal (:func:`merge_ties`); the ranks of model_similarity group them instead
    (``tol`` of :func:`_sorted_groups`), without a second sort.
    """
    # 1. validate, and bring rows to the form whose inner products give the dissimilarity
    x = np.asarray(x)
    images = np.arange(len(x)).astype(str) if images is None else images
    _check_finite_and_varying(x, method, model, images)
    y = x.astype(np.float64)
    if method == "euclidean":
        y -= y.mean(axis=0)  # distances do not change; centering shrinks the cancellation below
        norms = np.einsum("ij,ij->i", y, y)
    else:
        if method == "correlation":
            y -= y.mean(axis=1, keepdims=True)
        y /= np.sqrt(np.einsum("ij,ij->i", y, y))[:, None]
    # 2. GEMMs over strips of rows, each against the images from its first row on: half the
    #    flops of a full Gram matrix, and a strip (not n × n) in memory
    n = len(x)
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    start = 0
    for first in range(0, n - 1, _STRIP_ROWS):
        strip = y[first : first + _STRIP_ROWS] @ y[first:].T
        for row in range(strip.shape[0]):
            i = first + row
            stop = start + n - 1 - i
            products = strip[row, row + 1 :]
            if method == "euclidean":
                np.sqrt(_squared_distances(y, norms, i, products), out=out[start:stop])
            else:
                np.subtract(1.0, products, out=out[start:stop])
            start = stop
    # 3. one value for dissimilarities equal up to the GEMMs' rounding, as pdist computes them
    return merge_ties(out) if merge else out


def _squared_distances(y: np.ndarray, norms: np.ndarray, i: int, products: np.ndarray) -> np.ndarray:
    """Squared euclidean distances of row ``i`` to the rows after it, from the Gram identity,
    recomputed from the differences where it cancels (near-identical rows)."""
    scale = norms[i] + norms[i + 1 :]
    squared = np.maximum(scale - 2.0 * products, 0.0)
    close = np.flatnonzero(squared < _CANCELLATION * scale)
    if close.size:
        differences = y[i + 1 + close] - y[i]
        squared[close] = np.einsum("ij,ij->i", differences, differences)
    return squared


def tie_tolerance(v: np.ndarray) -> float:
    """:data:`TIE_RTOL` times ``max |v|``: the distance below which dissimilarities are one value."""
    return TIE_RTOL * float(np.max(np.abs(v))) if v.size else 0.0


def merge_ties(v: np.ndarray) -> np.ndarray:
    """``v`` with each run of values closer than :func:`tie_tolerance` set to its smallest, in place.

    Neighbours in sorted order are compared, so a run may chain values that together span more
    than the tolerance: at 12M correlation distances of random features (crowded near 1) ~300
    distinct pairs merge, each moving by < 3e-13, below the RDM's own rounding.
    """
    if v.size < 2:
        return v
    position, first = _sorted_groups(v, tie_tolerance(v))
    if not first.all():
        ordered = v[position]
        v[position] = ordered[first][np.cumsum(first) - 1]
    return v


def _sorted_groups(v: np.ndarray, tol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sort P floats: the positions in sorted order, and which sorted element starts a tie group.

    ``tol > 0``: a group also holds the sorted neighbours up to ``tol`` above the previous one.

    A fixed-point key of each value over the values' range (monotone, so it never reverses an
    order) and the position are packed into one uint64 and sorted in place — several times
    faster than an argsort. Values whose keys collide are then ordered, and split into exact
    ties, by their full float64 values.
    """
    v = np.asarray(v, dtype=np.float64)
    p = v.size
    if p >= 2**31:
        raise ValueError(f"{p} pairs exceed the int32 rank range (at most ~65,000 images)")
    # 1. pack (key, position), sort; halving first keeps every difference finite
    shift = max(1, (p - 1).bit_length())
    steps = float(2 ** min(52, 64 - shift) - 2)
    low, high = v.min() * 0.5, v.max() * 0.5
    key = np.multiply(v, 0.5)
    key -= low
    span = high - low
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scale = steps / span
    if np.isfinite(scale):
        key *= scale
    elif span > 0:  # a range of a few subnormals: scale in two steps
        key /= span
        key *= steps
    key = key.astype(np.uint64)
    key <<= np.uint64(shift)
    key |= np.arange(p, dtype=np.uint64)
    key.sort()
    position = (key & np.uint64(2**shift - 1)).astype(np.intp)
    key >>= np.uint64(shift)
    first = np.empty(p, dtype=bool)
    first[0] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    del key
    # 2. runs of equal keys: order by the full values, start a new group where a value changes
    in_run = ~first
    in_run[:-1] |= ~first[1:]
    members = np.flatnonzero(in_run)
    if members.size:
        positions = position[members]
        values = v[positions]
        order = np.lexsort((values, np.cumsum(first[members])))
        position[members] = positions[order]
        values = values[order]
        first[members[1:]] |= values[1:] != values[:-1]
    if tol > 0:
        np.greater(np.diff(v[position]), tol, out=first[1:])
    return position, first


def _doubled_centered_ranks(v: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """``2·rankdata(v) − (P + 1)`` as int32: average ranks of ties (within ``tol``), doubled to be integers."""
    position, first = _sorted_groups(v, tol)
    p = position.size
    # the group at sorted positions start..stop-1 has the rank (start + 1 + stop) / 2
    starts = np.flatnonzero(first)
    ends = np.empty_like(starts)  # in place: this runs on 12M pairs at full scale
    ends[:-1], ends[-1] = starts[1:], p
    ends += starts
    ends -= p
    doubled = ends.astype(np.int32)
    del starts, ends
    group = np.cumsum(first, dtype=np.int32)
    group -= 1
    out = np.empty(p, dtype=np.int32)
    out[position] = doubled[group]
    return out


def _dense_ranks(v: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """``rankdata(v, method="dense")`` as int32 (1, 2, …; ties, within ``tol``, share a rank)."""
    position, first = _sorted_groups(v, tol)
    out = np.empty(position.size, dtype=np.int32)
    out[position] = np.cumsum(first, dtype=np.int32)
    return out


def _cross_products(vectors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``Σ (v_a − o_a)(v_b − o_b)`` over pairs for all model pairs, in float64 blocks."""
    m, p = vectors.shape
    total = np.zeros((m, m), dtype=np.float64)
    for start in range(0, p, _PAIR_BLOCK):
        block = vectors[:, start : start + _PAIR_BLOCK].astype(np.float64)
        block -= offsets[:, None]
        total += block @ block.T
    return total


def _correlation_from_products(products: np.ndarray) -> np.ndarray:
    scale = np.sqrt(np.diag(products))
    sim = products / np.outer(scale, scale)
    np.fill_diagonal(sim, 1.0)
    return np.clip(sim, -1.0, 1.0)


def _tied_pairs(v: np.ndarray, *, is_sorted: bool = False) -> int:
    """Number of pairs of equal elements."""
    v = v if is_sorted else np.sort(v)
    starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
    counts = np.diff(np.r_[starts, v.size])
    return int((counts * (counts - 1) // 2).sum())


def _tau_a(a: np.ndarray, b: np.ndarray, a_ties: int, b_ties: int) -> float:
    """Kendall tau-a of two dense-rank vectors (int32, from 1), exactly as rsatoolbox defines it.

    ``(C − D) / T`` with ``T = P (P − 1) / 2``: ``C − D = T − X − Y + J − 2 D``, where X, Y are
    the pairs tied in a, in b, and J those tied in both (as in :func:`scipy.stats.kendalltau`).
    """
    p = a.size
    total = p * (p - 1) // 2
    if _kendall_dis is None:
        return _tau_a_from_tau_b(a, b, a_ties, b_ties)
    # 1. order by (a, b), packed in one uint64
    key = a.astype(np.uint64)
    key <<= np.uint64(32)
    key |= b.astype(np.uint64)
    key.sort()
    joint = _tied_pairs(key, is_sorted=True)
    # 2. pairs ordered one way by a and the other by b: scipy's Fenwick-tree count over b's ranks
    y = (key & np.uint64(2**32 - 1)).astype(np.intp)
    key >>= np.uint64(32)
    discordant = int(_kendall_dis(key.astype(np.intp), y))
    return (total - a_ties - b_ties + joint - 2 * discordant) / total


def _tau_a_from_tau_b(a: np.ndarray, b: np.ndarray, a_ties: int, b_ties: int) -> float:
    """tau-a from scipy's public tau-b ``(C − D) / sqrt((T − X)(T − Y))`` (exact tie counts)."""
    total = a.size * (a.size - 1) // 2
    if a_ties == total or b_ties == total:
        return 0.0
    tau_b = scipy.stats.kendalltau(a, b).statistic
    return float(tau_b * np.sqrt(float(total - a_ties)) * np.sqrt(float(total - b_ties)) / total)


def _tau_a_matrix(vectors: np.ndarray, progress: Callable[[], None] | None = None) -> np.ndarray:
    """tau-a for every pair of models; pairs run on two threads (the sort and count release the GIL)."""
    m = len(vectors)
    ties = [_tied_pairs(v) for v in vectors]
    sim = np.eye(m)
    pairs = list(itertools.combinations(range(m), 2))
    with ThreadPoolExecutor(max_workers=_TAU_THREADS) as pool:
        for (a, b), tau in zip(pairs, pool.map(lambda ab: _tau_a(vectors[ab[0]], vectors[ab[1]], ties[ab[0]], ties[ab[1]]), pairs)):
            sim[a, b] = sim[b, a] = tau
            if progress is not None:
                progress()
    return sim


#: compare method → per-model transform of a condensed RDM: (vector to keep, offset to subtract)
def _keep_ranks(v: np.ndarray, tol: float = 0.0) -> tuple[np.ndarray, float]:
    return _doubled_centered_ranks(v, tol), 0.0


def _keep_dense_ranks(v: np.ndarray, tol: float = 0.0) -> tuple[np.ndarray, float]:
    return _dense_ranks(v, tol), 0.0


def _keep_values(v: np.ndarray, tol: float = 0.0) -> tuple[np.ndarray, float]:
    # ties do not matter to Pearson: tol is not used
    # float32 storage halves memory; rounding moves a Pearson r by ~1e-8
    return v.astype(np.float32), float(v.mean())


_TRANSFORMS: dict[str, Callable[[np.ndarray, float], tuple[np.ndarray, float]]] = {
    "spearman": _keep_ranks,
    "tau-a": _keep_dense_ranks,  # they keep the order and the ties: tau-a on them equals tau-a on values
    "pearson": _keep_values,
}


def _model_vector(
    x: np.ndarray, method: str, compare: str, images: np.ndarray
) -> tuple[np.ndarray, float] | UnusableFeatures:
    """One model's kept vector and offset, or the reason its features are unusable.

    The reason is returned, not raised, so that the caller, which knows the model, names it
    (this runs as one task per model, whose inputs may be a bare block of a lazy array).
    """
    try:
        rdm = _condensed_rdm(x, method, "", images, merge=False)
        return _TRANSFORMS[compare](rdm, tie_tolerance(rdm))
    except UnusableFeatures as problem:
        return problem
