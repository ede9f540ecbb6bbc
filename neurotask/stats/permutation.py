"""Voxelwise permutation nulls for encoding scores, with BH-FDR and optional max-statistic FWER.

DESIGN §3 "Permutation nulls". The default null (Neural Taskonomy) shuffles the test responses'
rows against fixed test predictions, with the same permutation for every voxel. Both r and R²
reduce, per permutation, to one cross product per voxel ``c_v = Σ_t a[t, v] · b[π(t), v]`` of
arrays prepared once (permutations leave means and norms unchanged):

* r:  ``a, b`` = predictions and responses centred and scaled to unit norm per voxel, null = c;
* R²: ``a, b`` = predictions and responses minus the test mean of the responses, scaled by
  ``√SS_tot``; since ``SS_res = SS_tot + Σa'² − 2c'``, null = ``2c − Σ_t a²``.

The kernel gathers the permuted response rows once per permutation and reuses them for every
model; the sum over trials runs in a fixed order, so a voxel's null values do not depend on the
chunking. Permutations come from ``numpy.random.default_rng(seed)`` as one
``(n_permutations, n_test)`` index matrix before anything is chunked, so results are identical for
a seed whatever the voxel chunks, permutation blocks or number of workers.

``method="refit"`` permutes the training rows instead and refits each voxel with its chosen alpha.
With fixed alphas, ridge's test predictions are a linear map of the training responses,
``ŷ_test = ȳ_train + H_α y_train`` with ``H_α = X̃_test (X̃ᵀX̃ + αI)⁻¹ X̃ᵀ`` (X̃ centred with the
training means), so every permutation costs one ``(n_test × n_train) @ (n_train × voxels)`` GEMM
per distinct alpha, after one eigendecomposition of the Gram matrix per model. (Its GEMMs go
through BLAS, whose rounding may depend on the block width: refit p-values are reproducible for a
seed, and equal across chunkings except for nulls within float32 rounding of the observed value.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.linalg
import xarray as xr

from neurotask.stats.fdr import fdr_bh
from neurotask.stores import validate_responses

__all__ = ["permutation_test", "PERMUTATION_METHODS", "STATISTICS"]

STATISTICS = ("r", "r2")
#: Null distributions: name → what is permuted.
PERMUTATION_METHODS = {
    "shuffle-test": "test responses' rows against fixed test predictions",
    "refit": "training responses' rows, refitting each voxel with its chosen alpha",
}

_VOXEL_SUBBLOCK = 1024  # columns per inner step: one (n_test × 1024) float32 gather stays in L2
_BLOCK_BYTES = 1 << 25  # null values per (permutation block × voxel chunk) task: 32 MiB


# --------------------------------------------------------------------------------------------
# numpy kernels


def _permutations(n: int, n_permutations: int, seed: int) -> np.ndarray:
    """The ``(n_permutations, n)`` row-index matrix, drawn before any chunking."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(n_permutations)]).astype(np.intp)


def _trial_sum(x: np.ndarray) -> np.ndarray:
    """Sum over axis -2 (trials) in trial order, whatever the number of voxel columns.

    numpy reduces axis -2 of a C-ordered array row by row, except when a single column is left:
    that array is contiguous and gets pairwise summation. A zero column keeps the order fixed,
    so a voxel's values never depend on the chunk it falls in.
    """
    if x.shape[-1] == 1:
        return np.concatenate([x, np.zeros_like(x)], axis=-1).sum(axis=-2)[..., :1]
    return np.ascontiguousarray(x).sum(axis=-2)


def _prepare(
    predictions: np.ndarray, responses: np.ndarray, statistic: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrays ``a (model, trial, voxel)``, ``b (trial, voxel)``, ``offset (model, voxel)`` such that
    the statistic under permutation π is ``scale · Σ_t a[t]·b[π(t)] + offset`` (scale 1 for r, 2 for R²).

    Voxels whose responses (or, for r, predictions) are constant get NaN (undefined statistic).
    """
    pred = predictions.astype(np.float64)
    resp = responses.astype(np.float64)
    n = resp.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        if statistic == "r":
            pred = pred - _trial_sum(pred)[:, None] / n
            resp = resp - _trial_sum(resp)[None] / n
            a = pred / np.sqrt(_trial_sum(pred**2))[:, None]
            b = resp / np.sqrt(_trial_sum(resp**2))[None]
            offset = np.zeros(a.shape[::2])
        else:
            mean = _trial_sum(resp)[None] / n
            scale = np.sqrt(_trial_sum((resp - mean) ** 2))[None]
            scale[scale == 0] = np.nan
            a = (pred - mean) / scale
            b = (resp - mean) / scale
            offset = -_trial_sum(a**2)
    bad = ~np.isfinite(b).all(axis=0) | ~np.isfinite(a).all(axis=1)  # (model, voxel)
    a = np.where(bad[:, None, :], np.nan, a)
    return a.astype(np.float32), b.astype(np.float32), offset.astype(np.float32)


def _cross_products(perms: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``c[p, m, v] = Σ_t a[m, t, v] · b[perms[p, t], v]`` in float32.

    1. for each block of ~1024 voxel columns (so the gathered rows stay in cache),
    2. gather the permuted rows of ``b`` once per permutation,
    3. multiply by every model's ``a`` and sum over trials (row by row, in trial order).
    """
    n_models, n_trials, n_voxels = a.shape
    out = np.empty((perms.shape[0], n_models, n_voxels), dtype=np.float32)
    for start in range(0, n_voxels, _VOXEL_SUBBLOCK):
        cols = slice(start, min(start + _VOXEL_SUBBLOCK, n_voxels))
        b_cols = np.ascontiguousarray(b[:, cols])
        a_cols = np.ascontiguousarray(a[:, :, cols])
        gathered = np.empty_like(b_cols)
        product = np.empty_like(b_cols)
        for p, perm in enumerate(perms):
            np.take(b_cols, perm, axis=0, out=gathered)
            for m in range(n_models):
                np.multiply(gathered, a_cols[m], out=product)
                out[p, m, cols] = _trial_sum(product)
    return out


def _shuffle_null(
    perms: np.ndarray, a: np.ndarray, b: np.ndarray, offset: np.ndarray, statistic: str
) -> np.ndarray:
    """Null statistics ``(permutation, model, voxel)`` of the shuffle-test method."""
    cross = _cross_products(perms, a, b)
    if statistic == "r":
        return cross
    return 2 * cross + offset[None]


def _hat_matrices(
    x_train: np.ndarray, x_test: np.ndarray, alphas: np.ndarray, standardize: bool
) -> np.ndarray:
    """Ridge solution operators ``H_α (alpha, test trial, train trial)`` mapping centred training
    responses to test predictions, from one eigendecomposition of the k×k Gram matrix."""
    x_train = x_train.astype(np.float64)
    mean = x_train.mean(axis=0)
    train = x_train - mean
    test = x_test.astype(np.float64) - mean
    if standardize:
        std = train.std(axis=0)
        std[std == 0] = 1.0
        train /= std
        test /= std
    eigenvalues, eigenvectors = scipy.linalg.eigh(train.T @ train)
    eigenvalues = np.clip(eigenvalues, 0, None)
    test_v = test @ eigenvectors
    train_v = train @ eigenvectors
    return np.stack([(test_v / (eigenvalues + alpha)) @ train_v.T for alpha in alphas]).astype(np.float32)


def _score(prediction: np.ndarray, observed: np.ndarray, statistic: str) -> np.ndarray:
    """Per-column Pearson r or R² (``1 − SS_res/SS_tot``, SS_tot around the test mean)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if statistic == "r":
            pred = prediction - _trial_sum(prediction) / len(prediction)
            obs = observed - _trial_sum(observed) / len(observed)
            return _trial_sum(pred * obs) / np.sqrt(_trial_sum(pred**2) * _trial_sum(obs**2))
        ss_tot = _trial_sum((observed - _trial_sum(observed) / len(observed)) ** 2)
        return 1 - _trial_sum((observed - prediction) ** 2) / ss_tot


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
        out[p, 0, order] = _score(train_mean + prediction, y_test_sorted, statistic)
    return out


# --------------------------------------------------------------------------------------------
# orchestration: one observed task per (models × voxel chunk), one task per permutation block of it;
# counts are reduced inside the tasks, so memory is bounded by one null block


def _count(null: np.ndarray, observed: np.ndarray, fwer: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``#{null ≥ observed}`` per (model, voxel), and with ``fwer`` the max over voxels per (permutation, model)."""
    exceed = (null >= observed[None]).sum(axis=0, dtype=np.int64)
    return exceed, (np.fmax.reduce(null, axis=2) if fwer else None)


def _shuffle_observed(prepared: tuple, statistic: str) -> np.ndarray:
    return _shuffle_null(np.arange(prepared[1].shape[0])[None], *prepared, statistic)[0]


def _shuffle_block(perms: np.ndarray, prepared: tuple, observed: np.ndarray, statistic: str, fwer: bool):
    return _count(_shuffle_null(perms, *prepared, statistic), observed, fwer)


def _refit_observed(hats, alpha_index, y_train, y_test, statistic: str) -> np.ndarray:
    return _refit_null(np.arange(y_train.shape[0])[None], hats, alpha_index, y_train, y_test, statistic)[0]


def _refit_block(perms, hats, alpha_index, y_train, y_test, observed, statistic: str, fwer: bool):
    return _count(_refit_null(perms, hats, alpha_index, y_train, y_test, statistic), observed, fwer)


def _merge_blocks(*blocks: tuple[np.ndarray, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray | None]:
    """Sum the exceedance counts of a unit's permutation blocks; stack their maxima in block order."""
    exceed = np.sum([block[0] for block in blocks], axis=0)
    maxima = None if blocks[0][1] is None else np.concatenate([block[1] for block in blocks], axis=0)
    return exceed, maxima


@dataclass
class _Unit:
    """One task group: the observed statistic of (models × voxel chunk) and its permutation blocks."""

    models: slice
    voxels: slice
    observed: Any
    blocks: list


def _compute(units: list[_Unit], shape: tuple[int, int], n_permutations: int, fwer: bool, client, progress: bool):
    """Run every unit (on ``client``, the current client, or threads) and assemble
    ``observed`` and ``exceed (model, voxel)`` and ``maxima (permutation, model)``."""
    merged = [dask.delayed(_merge_blocks)(*unit.blocks) for unit in units]
    todo = [unit.observed for unit in units] + merged
    if client is not None:
        futures = client.compute(todo)
        if progress:
            from distributed import progress as distributed_progress

            distributed_progress(futures)
        done = client.gather(futures)
    elif progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            done = dask.compute(*todo)
    else:
        done = dask.compute(*todo)
    observed = np.full(shape, np.nan, dtype=np.float32)
    exceed = np.zeros(shape, dtype=np.int64)
    maxima = np.full((n_permutations, shape[0]), -np.inf, dtype=np.float32) if fwer else None
    for unit, obs, (exc, mx) in zip(units, done[: len(units)], done[len(units):]):
        observed[unit.models, unit.voxels] = obs
        exceed[unit.models, unit.voxels] = exc
        if fwer:
            maxima[:, unit.models] = np.fmax(maxima[:, unit.models], mx)
    return observed, exceed, maxima


def _test_split(results: xr.Dataset, responses: xr.DataArray) -> np.ndarray:
    if "is_test" not in results:
        raise ValueError(
            "results lacks the 'is_test (trial)' variable of an encoding fit; pass the Dataset "
            "returned by nt.encoding.fit (or opened with nt.open_results)."
        )
    is_test = np.asarray(results["is_test"].values, dtype=bool)
    if is_test.shape != (responses.sizes["trial"],):
        raise ValueError(
            f"results.is_test has {is_test.size} trials but responses has {responses.sizes['trial']}; "
            "pass the responses the results were fitted on."
        )
    return is_test


def _predictions(
    results: xr.Dataset, responses: xr.DataArray, features: xr.DataArray | None, predictions
) -> xr.DataArray:
    if predictions is None and "prediction" in results:
        predictions = results["prediction"]
    if predictions is None:
        if features is None:
            raise ValueError(
                "permutation_test needs the test predictions: pass features=... (the features the "
                "results were fitted on; predictions are recomputed lazily with nt.encoding.predict) "
                "or predictions=... (model, trial, voxel)."
            )
        from neurotask.encoding import predict

        predictions = predict(results, features, responses)
    if set(predictions.dims) != {"model", "trial", "voxel"}:
        raise ValueError(f"predictions must have dims (model, trial, voxel); got {predictions.dims}.")
    return predictions.transpose("model", "trial", "voxel")


def _select_rows(block: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    block = np.asarray(block, dtype=np.float32)
    return block if rows is None else np.take(block, rows, axis=-2)


def _voxel_blocks(array: xr.DataArray, voxel_chunk: int, rows: np.ndarray | None = None) -> tuple[list, list[slice]]:
    """Per voxel chunk, a delayed float32 block of ``array`` (voxel last), optionally only ``rows``
    of its second-to-last dim. Dask input keeps its graph (rechunked along voxel only); numpy input
    is cut into views here (``da.from_array`` would copy the whole array first)."""
    n_voxels = array.shape[-1]
    if isinstance(array.data, da.Array):
        data = array.data.rechunk({i: -1 for i in range(array.ndim - 1)} | {array.ndim - 1: voxel_chunk})
        voxels = _voxel_slices(data.chunks[-1])
        blocks = data.to_delayed().reshape(-1)
    else:
        data = np.asarray(array.data)
        voxels = [slice(start, min(start + voxel_chunk, n_voxels)) for start in range(0, n_voxels, voxel_chunk)]
        blocks = [data[..., cols] for cols in voxels]
    return [dask.delayed(_select_rows)(block, rows) for block in blocks], voxels


def _voxel_slices(chunks: tuple[int, ...]) -> list[slice]:
    bounds = np.cumsum((0,) + tuple(chunks))
    return [slice(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:])]


def _shuffle_units(
    predictions: xr.DataArray, responses: xr.DataArray, is_test: np.ndarray, perms: np.ndarray, statistic: str,
    voxel_chunk: int, permutation_block: int, fwer: bool,
) -> list[_Unit]:
    pred, voxels = _voxel_blocks(predictions, voxel_chunk)
    resp, _ = _voxel_blocks(responses, voxel_chunk, None if is_test.all() else np.flatnonzero(is_test))
    blocks = [perms[start:start + permutation_block] for start in range(0, len(perms), permutation_block)]
    units = []
    for pred_block, resp_block, cols in zip(pred, resp, voxels):
        prepared = dask.delayed(_prepare, nout=3)(pred_block, resp_block, statistic)
        observed = dask.delayed(_shuffle_observed)(prepared, statistic)
        work = [dask.delayed(_shuffle_block)(block, prepared, observed, statistic, fwer) for block in blocks]
        units.append(_Unit(slice(None), cols, observed, work))
    return units


def _refit_parameters(results: xr.Dataset) -> bool:
    parameters = json.loads(results.attrs.get("parameters", "{}") or "{}")
    return bool(results.attrs.get("standardize", parameters.get("standardize", False)))


def _design(features: xr.DataArray, model: str, images: np.ndarray) -> np.ndarray:
    """A model's (trial, feature) design; a joint model "a+b" concatenates its spaces (as fit does)."""
    spaces = [features.sel(model=space).sel(image=images).transpose("image", "feature").values for space in model.split("+")]
    return np.concatenate(spaces, axis=1) if len(spaces) > 1 else np.asarray(spaces[0])


def _refit_units(
    results: xr.Dataset, features: xr.DataArray | None, responses: xr.DataArray, is_test: np.ndarray,
    perms: np.ndarray, statistic: str, voxel_chunk: int, permutation_block: int, fwer: bool,
) -> list[_Unit]:
    if features is None:
        raise ValueError("method='refit' needs features=... (model, image, feature): the refit uses the design.")
    standardize = _refit_parameters(results)
    y_train, voxels = _voxel_blocks(responses, voxel_chunk, np.flatnonzero(~is_test))
    y_test, _ = _voxel_blocks(responses, voxel_chunk, np.flatnonzero(is_test))
    blocks = [perms[start:start + permutation_block] for start in range(0, len(perms), permutation_block)]
    images = responses["image"].values
    units = []
    for m, model in enumerate(results["model"].values):
        design = _design(features, str(model), images)
        alpha = np.asarray(results["alpha"].sel(model=model).values, dtype=np.float64)
        alphas, alpha_index = np.unique(alpha, return_inverse=True)
        hats = dask.delayed(_hat_matrices)(design[~is_test], design[is_test], alphas, standardize or "+" in str(model))
        for train_block, test_block, cols in zip(y_train, y_test, voxels):
            args = (hats, alpha_index[cols], train_block, test_block)
            observed = dask.delayed(_refit_observed)(*args, statistic)
            work = [dask.delayed(_refit_block)(block, *args, observed, statistic, fwer) for block in blocks]
            units.append(_Unit(slice(m, m + 1), cols, observed, work))
    return units


def permutation_test(
    results: xr.Dataset,
    responses: xr.DataArray,
    features: xr.DataArray | None = None,
    *,
    predictions: xr.DataArray | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
    method: str = "shuffle-test",
    statistic: str = "r",
    q: float = 0.05,
    fwer: bool = False,
    voxel_chunk: int | None = None,
    permutation_block: int | None = None,
    client=None,
    progress: bool = False,
) -> xr.Dataset:
    """Voxelwise permutation p-values of encoding scores, with Benjamini–Hochberg FDR per model.

    The same permutation is applied to every voxel; ``p = (1 + #{null ≥ observed}) / (1 + n)``.
    The observed statistic is recomputed from the predictions by the same kernel (identity
    permutation), so it matches its null exactly. This function computes (p-values need every
    permutation; FDR needs every voxel); memory is bounded by one (permutation block × voxel chunk).

    Parameters
    ----------
    results : xarray.Dataset
        An encoding fit (:func:`neurotask.encoding.fit`): ``is_test (trial)``, ``alpha (model, voxel)``.
    responses : xarray.DataArray, dims (trial, voxel)
        The responses the results were fitted on (lazy is fine).
    features : xarray.DataArray, dims (model, image, feature), optional
        The fitted features: test predictions are recomputed with :func:`neurotask.encoding.predict`
        (shuffle-test), or the design is rebuilt (refit). Not needed when ``predictions`` is given.
    predictions : xarray.DataArray, dims (model, trial, voxel), optional
        Test-set predictions (trials in the order of ``responses.isel(trial=is_test)``).
    n_permutations : int
        Number of permutations (default 1000).
    seed : int
        Seed of ``numpy.random.default_rng`` drawing the ``(n_permutations, n_trials)`` permutations.
    method : {"shuffle-test", "refit"}
        What is permuted (see :data:`PERMUTATION_METHODS`).
    statistic : {"r", "r2"}
        Test statistic: Pearson r or R² on the test set.
    q : float
        FDR level (and FWER level when ``fwer``).
    fwer : bool
        Also return the max-statistic null and FWER-corrected p-values.
    voxel_chunk : int, optional
        Voxels per task (default: the responses' voxel chunks, else 4096).
    permutation_block : int, optional
        Permutations per task (default: ~32 MiB of null values per task).
    client : distributed.Client, optional
        Where to compute; default the current client, else the threaded scheduler.
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        ``p``, ``q`` (BH-adjusted), ``significant`` (model, voxel), ``observed`` (model, voxel); with
        ``fwer``: ``null_max (model, permutation)``, ``threshold_fwer (model)`` (the (1−q) quantile
        of the max null), ``p_fwer`` and ``significant_fwer (model, voxel)``. Voxel coords are
        copied from ``responses``.

    Examples
    --------
    >>> perm = nt.stats.permutation_test(fit, resp, feats, n_permutations=1000, seed=0)  # doctest: +SKIP
    >>> perm.significant.sum("voxel")                                                    # doctest: +SKIP
    """
    if method not in PERMUTATION_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(PERMUTATION_METHODS)}")
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected one of {list(STATISTICS)}")
    if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise ValueError(
            f"The 'n_permutations' parameter of permutation_test must be an int ≥ 1. Got {n_permutations!r} instead."
        )
    responses = validate_responses(responses)
    is_test = _test_split(results, responses)
    models = results["model"].values
    if voxel_chunk is None:
        chunks = responses.chunksizes.get("voxel") if responses.chunks else None
        voxel_chunk = int(chunks[0]) if chunks else 4096
    if permutation_block is None:
        permutation_block = max(1, min(n_permutations, _BLOCK_BYTES // (4 * len(models) * voxel_chunk)))
    if method == "shuffle-test":
        pred = _predictions(results, responses, features, predictions)
        perms = _permutations(int(is_test.sum()), n_permutations, seed)
        units = _shuffle_units(pred, responses, is_test, perms, statistic, voxel_chunk, permutation_block, fwer)
    else:
        perms = _permutations(int((~is_test).sum()), n_permutations, seed)
        units = _refit_units(results, features, responses, is_test, perms, statistic, voxel_chunk, permutation_block,
                             fwer)
    shape = (len(models), responses.sizes["voxel"])
    observed, exceed, null_max = _compute(units, shape, n_permutations, fwer, client, progress)
    valid = np.isfinite(observed)
    p = np.where(valid, (1.0 + exceed) / (1.0 + n_permutations), np.nan)
    significant, q_values = fdr_bh(p, q)
    voxel_coords = {name: c for name, c in responses.coords.items() if c.dims == ("voxel",)}
    coords = {"model": models, **voxel_coords}
    dims = ("model", "voxel")
    out = xr.Dataset(
        {
            "p": (dims, p.astype(np.float32), {"long_name": "permutation p-value"}),
            "q": (dims, q_values.astype(np.float32), {"long_name": "BH-adjusted p-value"}),
            "significant": (dims, significant, {"long_name": f"significant at FDR q={q}"}),
            "observed": (dims, observed, {"long_name": f"observed test {statistic}"}),
        },
        coords=coords,
    )
    if fwer:
        null_max = null_max.T  # (model, permutation)
        ordered = np.sort(null_max, axis=1)  # #{max null ≥ observed} by binary search, per model
        exceed_max = np.stack([n_permutations - np.searchsorted(o, obs, side="left") for o, obs in zip(ordered, observed)])
        p_fwer = np.where(valid, (1.0 + exceed_max) / (1.0 + n_permutations), np.nan)
        out["null_max"] = (("model", "permutation"), null_max, {"long_name": f"max over voxels of null {statistic}"})
        out["threshold_fwer"] = (("model",), np.quantile(null_max, 1 - q, axis=1, method="higher"))
        out["p_fwer"] = (dims, p_fwer.astype(np.float32), {"long_name": "max-statistic FWER p-value"})
        out["significant_fwer"] = (dims, p_fwer <= q, {"long_name": f"significant at FWER {q}"})
    out.attrs = {
        "method": method,
        "statistic": statistic,
        "n_permutations": int(n_permutations),
        "seed": int(seed),
        "q": float(q),
        "fdr": "fdr_bh",
    }
    return out
