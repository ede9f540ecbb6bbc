"""Voxelwise permutation nulls for encoding scores, with BH-FDR and optional max-statistic FWER.

DESIGN §3 "Permutation nulls". The default null (Neural Taskonomy) shuffles the test responses'
rows against fixed test predictions, with the same permutation for every voxel. Both r and R²
reduce, per permutation, to one cross product per voxel ``c_v = Σ_t a[t, v] · b[π(t), v]`` of
arrays prepared once (permutations leave means and norms unchanged):

* r:  ``a, b`` = predictions and responses centred and scaled to unit norm per voxel, null = c;
* R²: ``a', b`` = predictions and responses minus the test mean of the responses, scaled by
  ``√SS_tot``; since ``SS_res = SS_tot + Σa'² − 2c'``, null = ``2c − Σ_t a'²``. The part of
  ``a'`` constant over trials meets ``Σ_t b[π(t)] = 0`` under every π, so ``c`` is taken with
  ``a = a' − mean_t a'`` (the predictions' own mean removed): otherwise the float32 rounding of
  that constant part, large where a voxel's alpha is large and its predictions nearly constant,
  would outweigh the varying part and decide the comparisons with the observed value. R²'s
  null then ranks permutations exactly as r's does.

The kernel gathers the permuted response rows once per permutation and reuses them for every
model; exceedances are counted on the cross products ``c`` (the statistic is increasing in them),
the statistic itself is formed only for the observed value and the maxima; the sum over trials
runs in a fixed order, so a voxel's null values do not depend on the chunking. Permutations come
from ``numpy.random.default_rng(seed)`` as one ``(n_permutations, n_test)`` index matrix before
anything is chunked, so results are identical for a seed whatever the voxel chunks, permutation
blocks or number of workers. The test predictions
are those the fit kept (``results.prediction``), so the features are not needed; given features,
they are recomputed with :func:`neurotask.encoding.predict` for fits that kept none. Test trials
are the fit's scored ones: trials left out because their image was also shown in training are
left out of the null too.

``method="refit"`` permutes the training rows instead and refits each voxel with its chosen alpha.
With fixed alphas, ridge's test predictions are a linear map of the training responses,
``ŷ_test = ȳ_train + H_α y_train`` with ``H_α = X̃_test (X̃ᵀX̃ + αI)⁻¹ X̃ᵀ`` (X̃ centred with the
training means), so every permutation costs one ``(n_test × n_train) @ (n_train × voxels)`` GEMM
per distinct alpha, after one eigendecomposition of the Gram matrix per model (the ridge factors
of :func:`neurotask.encoding.ridge.make_ridge_factors`, built on the fit's design path; kernels in
:mod:`neurotask.stats.permutation_refit`). (Its GEMMs
go through BLAS, whose rounding may depend on the block width: refit p-values are reproducible for
a seed, and equal across chunkings except for nulls within float32 rounding of the observed value.)

Orchestration: one task per (models × voxel chunk), running every permutation block of it in
turn, through :func:`neurotask.execution.map_unordered` (threads here, or the Dask client);
counts are reduced inside the tasks, so memory is bounded by one null block per task.

``backend="torch"`` runs the kernels on a torch device (:mod:`neurotask.stats.permutation_torch`):
the shuffle-test products summed in the same trial order, so its p-values equal the numpy
kernel's; the refit GEMMs on the device. On a client whose workers advertise a ``GPU``
resource, the tasks ask for one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import contextlib

import dask
import dask.array as da
import numpy as np
import xarray as xr

from neurotask import backend as backends
from neurotask import execution
from neurotask.encoding import predict
from neurotask.encoding.design import aligned_features, design_matrix, model_spaces
from neurotask.encoding.split import training_index
from neurotask.stats import permutation_torch
from neurotask.stats.permutation_refit import _hat_matrices, _refit_null
from neurotask.stats.fdr import fdr_bh
from neurotask.stores import validate_features, validate_responses

__all__ = ["permutation_test", "PERMUTATION_METHODS", "STATISTICS"]

STATISTICS = ("r", "r2")
#: Null distributions: name → what is permuted.
PERMUTATION_METHODS = {
    "shuffle-test": "test responses' rows against fixed test predictions",
    "refit": "training responses' rows, refitting each voxel with its chosen alpha",
}

_VOXEL_SUBBLOCK = 1024  # columns per inner step: one (n_test × 1024) float32 gather stays in L2
_BLOCK_BYTES = 1 << 25  # null values per (permutation block × voxel chunk) step: 32 MiB


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
            shifted = (pred - mean) / scale
            b = (resp - mean) / scale
            offset = -_trial_sum(shifted**2)
            a = shifted - _trial_sum(shifted)[:, None] / n  # the constant part left out of c (module docstring)
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
            # mode="clip": the rows are a permutation, always in range; the default mode="raise"
            # buffers `out` (a fresh 1.4 MB block per call: 2.6x slower on Dask workers, whose
            # MALLOC_TRIM_THRESHOLD_ makes every such block a new mmap)
            np.take(b_cols, perm, axis=0, out=gathered, mode="clip")
            for m in range(n_models):
                np.multiply(gathered, a_cols[m], out=product)
                out[p, m, cols] = _trial_sum(product)
    return out


def _shuffle_statistic(cross: np.ndarray, offset: np.ndarray, statistic: str) -> np.ndarray:
    """The statistic from cross products ``(…, model, voxel)``: ``c`` for r, ``2c + offset`` for R²."""
    return cross if statistic == "r" else 2 * cross + offset


# --------------------------------------------------------------------------------------------
# tasks: one per (models × voxel chunk); its inputs are one array, the blocks stacked on axis 0


def _count(
    values: np.ndarray, ranked: np.ndarray, fwer: bool, finish: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None]:
    """``#{values ≥ ranked}`` per (model, voxel), and with ``fwer`` the max over voxels of
    ``finish(values)`` per (permutation, model)."""
    exceed = (values >= ranked[None]).sum(axis=0, dtype=np.int64)
    return exceed, (np.fmax.reduce(finish(values), axis=2) if fwer else None)


def _over_blocks(
    null: Callable[[np.ndarray], np.ndarray], n_rows: int, perms: np.ndarray, block: int, fwer: bool,
    finish: Callable[[np.ndarray], np.ndarray] = np.asarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The observed statistic (identity permutation), exceedance counts and maxima over permutation blocks.

    Exceedances are counted on ``null``'s values; ``finish``, increasing per voxel, maps them to
    the statistic for the observed value and the maxima (the shuffle test counts on its cross
    products: adding R²'s offset in float32 would round away differences between them).
    """
    ranked = null(np.arange(n_rows)[None])[0]
    counts = [_count(null(perms[start:start + block]), ranked, fwer, finish) for start in range(0, len(perms), block)]
    exceed = np.sum([c[0] for c in counts], axis=0)
    maxima = None if not fwer else np.concatenate([c[1] for c in counts], axis=0)
    return finish(ranked), exceed, maxima


def _materialize(item: Any) -> np.ndarray:
    # a lazy block computed in this thread (the caller's pool is the parallelism)
    item = item.compute(scheduler="synchronous") if isinstance(item, da.Array) else item
    return np.asarray(item, dtype=np.float32)


def _shuffle_task(item: Any, perms: np.ndarray, n_models: int, statistic: str, block: int, fwer: bool,
                  backend: backends.Backend = backends.Backend()) -> tuple:
    """Item rows: the models' predictions (model × test trial), then the test responses."""
    stacked = _materialize(item)
    n_test = perms.shape[1]
    prepared = _prepare(stacked[:-n_test].reshape(n_models, n_test, -1), stacked[-n_test:], statistic)
    name, device = backends.resolve(backend)  # where the task runs
    if name == "torch":
        return permutation_torch.shuffle_counts(perms, *prepared, statistic, block, fwer, device)
    a, b, offset = prepared
    return _over_blocks(lambda p: _cross_products(p, a, b), n_test, perms, block, fwer,
                        lambda cross: _shuffle_statistic(cross, offset, statistic))


def _refit_task(item: Any, perms: np.ndarray, hats: np.ndarray, alphas: np.ndarray, statistic: str, block: int,
                fwer: bool, backend: backends.Backend = backends.Backend()) -> tuple:
    """Item rows: the training responses, the test responses, then the voxels' chosen alphas."""
    stacked = _materialize(item)
    n_train = perms.shape[1]
    alpha_index = np.searchsorted(alphas, stacked[-1])
    y_train, y_test = stacked[:n_train], stacked[n_train:-1]
    name, device = backends.resolve(backend)  # where the task runs
    if name == "torch":
        return permutation_torch.refit_counts(perms, hats, alpha_index, y_train, y_test, statistic, fwer, device)
    return _over_blocks(lambda p: _refit_null(p, hats, alpha_index, y_train, y_test, statistic), n_train, perms,
                        block, fwer)


class _StackedBlocks(Sequence):
    """Per voxel chunk, the rows of several (rows, voxel) arrays stacked, built when a task is submitted.

    Dask input stays lazy (the task reads it where it runs); numpy input is cut into per-chunk
    copies one task at a time (``da.from_array`` would put the whole array in every task).
    """

    def __init__(self, parts: list[Any], voxel_chunk: int) -> None:
        self.parts = parts
        bounds = np.append(np.arange(0, parts[0].shape[-1], voxel_chunk), parts[0].shape[-1])
        self.voxels = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

    def __len__(self) -> int:
        return len(self.voxels)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        cols = self.voxels[index]
        blocks = [p[:, cols] for p in self.parts]
        if any(isinstance(b, da.Array) for b in blocks):
            return da.concatenate([b if isinstance(b, da.Array) else da.from_array(b) for b in blocks], axis=0)
        return np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks], axis=0)


def _rows(array: xr.DataArray, rows: np.ndarray | None = None) -> Any:
    """``array`` as (rows, voxel): its leading dims flattened, optionally only ``rows`` of its trial dim."""
    data = array.data
    if rows is not None and len(rows) != array.shape[-2]:
        data = data[..., rows, :]
    return data.reshape(-1, array.shape[-1])


def _run(task: Callable[..., tuple], items: _StackedBlocks, args: tuple, client: Any, advance: Callable,
         resources: bool = False) -> list:
    """``task`` over the items on threads here or on the client; results in item order.

    With ``resources``, tasks ask for a ``GPU`` when the client's workers advertise one.
    """
    client = execution.current_client(client)
    in_flight = None if client is None else 2 * (sum(client.nthreads().values()) or 1)
    done: list = [None] * len(items)
    gpu = backends.gpu_resources(client) if resources else None
    annotate = dask.annotate(resources=gpu) if gpu else contextlib.nullcontext()
    with execution.blas_threads(1 if client is None else None), annotate:
        for index, result in execution.map_unordered(task, items, args=args, client=client, in_flight=in_flight):
            done[index] = result
            advance()
    return done


# --------------------------------------------------------------------------------------------
# inputs


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


def _kept_predictions(results: xr.Dataset, is_test: np.ndarray) -> xr.DataArray:
    kept = results["prediction"]
    if "test_trial" in kept.coords and not np.array_equal(kept["test_trial"].values, np.flatnonzero(is_test)):
        raise ValueError("results.prediction's test_trial does not match results.is_test; pass the Dataset "
                         "returned by nt.encoding.fit unchanged (or predictions=...).")
    kept = kept.drop_vars([c for c in kept.coords if "test_trial" in kept[c].dims])
    return kept.rename(test_trial="trial") if "test_trial" in kept.dims else kept


def _predictions(
    results: xr.Dataset, responses: xr.DataArray, features: xr.DataArray | None, predictions: xr.DataArray | None,
    is_test: np.ndarray,
) -> xr.DataArray:
    if predictions is None and "prediction" in results:
        predictions = _kept_predictions(results, is_test)
    if predictions is None:
        if features is None:
            raise ValueError(
                "permutation_test needs the test predictions: fit with nt.encoding.fit (which keeps them in "
                "results.prediction), or pass features=... (the features the results were fitted on; predictions "
                "are recomputed lazily with nt.encoding.predict) or predictions=... (model, trial, voxel)."
            )
        predictions = predict(results, validate_features(features), responses)
    if set(predictions.dims) != {"model", "trial", "voxel"}:
        raise ValueError(f"predictions must have dims (model, trial, voxel); got {predictions.dims}.")
    return predictions.transpose("model", "trial", "voxel")


def _shuffle(results, responses, features, predictions, is_test, perms, statistic, voxel_chunk, block, fwer, client,
             advance, backend) -> list:  # noqa: ANN001
    pred = _predictions(results, responses, features, predictions, is_test)
    items = _StackedBlocks([_rows(pred), _rows(responses, np.flatnonzero(is_test))], voxel_chunk)
    done = _run(_shuffle_task, items, (perms, pred.sizes["model"], statistic, block, fwer, backend), client, advance,
                resources=backend.name != "numpy")
    return [(slice(None), cols, result) for cols, result in zip(items.voxels, done)]


def _refit(results, responses, features, is_test, perms, statistic, voxel_chunk, block, fwer, client,
           advance, backend) -> list:  # noqa: ANN001
    if features is None:
        raise ValueError("method='refit' needs features=... (model, image, feature): the refit uses the design.")
    features = validate_features(features)
    standardize = bool(results.attrs.get("standardize", False))
    train, test = training_index(results), np.flatnonzero(is_test)
    spaces = model_spaces(results)
    out = []
    for m, model in enumerate(map(str, results["model"].values)):
        design = design_matrix(aligned_features(features, responses, spaces[model]), spaces[model])
        alpha = results["alpha"].sel(model=model).astype(np.float32)
        alphas = np.unique(np.asarray(alpha.values))
        hats = _hat_matrices(design[train], design[test], alphas.astype(np.float64),
                             standardize or len(spaces[model]) > 1)
        items = _StackedBlocks([_rows(responses, train), _rows(responses, test), alpha.data[None]], voxel_chunk)
        done = _run(_refit_task, items, (perms, hats, alphas, statistic, block, fwer, backend), client, advance,
                    resources=backend.name != "numpy")
        out += [(slice(m, m + 1), cols, result) for cols, result in zip(items.voxels, done)]
    return out


def _assemble(parts: list, shape: tuple[int, int], n_permutations: int, fwer: bool) -> tuple:
    """``observed`` and ``exceed (model, voxel)`` and ``maxima (permutation, model)`` from the tasks."""
    observed = np.full(shape, np.nan, dtype=np.float32)
    exceed = np.zeros(shape, dtype=np.int64)
    maxima = np.full((n_permutations, shape[0]), -np.inf, dtype=np.float32) if fwer else None
    for models, voxels, (obs, exc, mx) in parts:
        observed[models, voxels] = obs
        exceed[models, voxels] = exc
        if fwer:
            maxima[:, models] = np.fmax(maxima[:, models], mx)
    return observed, exceed, maxima


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
    backend: str = "numpy",
    device: str = "auto",
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
        Permutations per step of a task (default: ~32 MiB of null values per step).
    client : distributed.Client, optional
        Where to compute; default the current client, else the threaded scheduler.
    progress : bool
        Show a progress bar.
    backend : {"numpy", "torch", "auto"}
        Array backend of the kernels (shuffle-test: the same sums in the same order, equal
        p-values; refit: GEMMs on the device); ``"auto"``: torch on CUDA where the task runs
        and sees a GPU, else numpy.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        Torch device.

    Returns
    -------
    xarray.Dataset
        ``p``, ``q`` (BH-adjusted), ``significant`` (model, voxel), ``observed`` (model, voxel); with
        ``fwer``: ``null_max (model, permutation)``, ``threshold_fwer (model)`` (the (1−q) quantile
        of the max null), ``p_fwer`` and ``significant_fwer (model, voxel)``. Voxel coords are
        copied from ``responses``; attrs ``backend`` and ``device`` as requested.

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
    request = backends.check_backend(backend, device, function="permutation_test")
    responses = validate_responses(responses)
    is_test = _test_split(results, responses)
    models = results["model"].values
    if voxel_chunk is None:
        chunks = responses.chunksizes.get("voxel") if responses.chunks else None
        # in memory: a chunk per core (results do not depend on the chunking)
        voxel_chunk = int(chunks[0]) if chunks else min(4096, max(256, -(-responses.sizes["voxel"] // execution.cpu_count())))
    if permutation_block is None:
        permutation_block = max(1, min(n_permutations, _BLOCK_BYTES // (4 * len(models) * voxel_chunk)))
    n_rows = int(is_test.sum()) if method == "shuffle-test" else training_index(results).size
    perms = _permutations(n_rows, n_permutations, seed)
    common = (perms, statistic, voxel_chunk, permutation_block, fwer, client)
    n_tasks = -(-responses.sizes["voxel"] // voxel_chunk) * (1 if method == "shuffle-test" else len(models))
    with execution.progress(f"permutations ({method})", n_tasks, enabled=progress) as advance:
        if method == "shuffle-test":
            parts = _shuffle(results, responses, features, predictions, is_test, *common, advance, request)
        else:
            parts = _refit(results, responses, features, is_test, *common, advance, request)
    shape = (len(models), responses.sizes["voxel"])
    observed, exceed, null_max = _assemble(parts, shape, n_permutations, fwer)
    return _dataset(observed, exceed, null_max, models, responses, n_permutations, q, fwer,
                    {"method": method, "statistic": statistic, "seed": int(seed),
                     **_backend_attrs(request, client)})


def _backend_attrs(request: backends.Backend, client: Any) -> dict[str, str]:
    """``backend`` and ``device``: resolved here without a client, as requested on one (each task resolves)."""
    if request.name == "numpy" or execution.current_client(client) is None:
        return {key: value for key, value in request.attrs.items() if key != "allow_tf32"}
    return {"backend": request.name, "device": request.device}


def _dataset(observed: np.ndarray, exceed: np.ndarray, null_max: np.ndarray | None, models: np.ndarray,
             responses: xr.DataArray, n_permutations: int, q: float, fwer: bool, attrs: dict) -> xr.Dataset:
    """p-values, FDR (and FWER) from the counts, as the result Dataset."""
    statistic = attrs["statistic"]
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
    out.attrs = {**attrs, "n_permutations": int(n_permutations), "q": float(q), "fdr": "fdr_bh"}
    return out
