"""Voxelwise ridge encoding on Dask: splits, folds, per-model factors shared by voxel chunks.

:func:`fit` follows DESIGN §3 (Encoding) and §6 (Execution):

1. align each model's features to the responses' trials by image id (``nt.align``);
2. split trials into training and test, and training trials into folds
   (:mod:`neurotask.encoding.split`);
3. per group of models whose factors fit in ``factor_memory``: compute each model's
   decompositions once (:mod:`neurotask.encoding.ridge`), then stream voxel chunks, each read
   once for all models of the group, through GEMM-only kernels.

Without a Dask client the chunks run one after another in this process, each split across one
thread per core with single-threaded BLAS (all cores busy, no BLAS barriers to stall on). With
a client (given, or the current one) the decompositions are tasks on the workers (one per fold,
so they run in parallel), the factors stay on the workers as futures, and chunk tasks use them
with single-threaded BLAS.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from threadpoolctl import threadpool_limits

from neurotask import stores
from neurotask.encoding import ridge
from neurotask.encoding.scoring import SCORINGS
from neurotask.encoding.split import Split, make_split

__all__ = ["DEFAULT_ALPHAS", "fit", "predict"]

#: The default alpha grid (DESIGN §3).
DEFAULT_ALPHAS = np.logspace(-2, 7, 19)

_VARIABLE_ATTRS = {
    "r2": {"long_name": "test-set R²", "units": "1", "method": "1 - SS_res / SS_tot (about the test mean)"},
    "r": {"long_name": "test-set Pearson r", "units": "1", "method": "Pearson correlation of prediction and response"},
    "alpha": {"long_name": "ridge alpha", "units": "1", "method": "per-voxel alpha chosen by cross-validation"},
    "cv_r2": {"long_name": "cross-validation R² at the chosen alpha", "units": "1",
              "method": "validation R² averaged over folds (GCV estimate for cv='gcv')"},
}


# --------------------------------------------------------------------------------------------
# argument checks


def _check_cv(cv: int | str) -> str:
    if cv == "gcv":
        return "gcv"
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool) and cv >= 2:
        return "kfold"
    raise ValueError(f"The 'cv' parameter of fit must be an int >= 2 or 'gcv'. Got {cv!r} instead.")


def _check_alphas(alphas: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if alphas is None:
        return DEFAULT_ALPHAS.copy()
    values = np.sort(np.atleast_1d(np.asarray(alphas, dtype=np.float64)))
    if values.ndim != 1 or not values.size or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"alphas must be a non-empty 1-D sequence of positive finite numbers; got {alphas!r}.")
    if np.unique(values).size != values.size:
        raise ValueError(f"alphas has duplicate values: {alphas!r}.")
    return values


def _model_specs(
    models: Sequence[str | Sequence[str]] | str | None, available: Sequence[str]
) -> list[tuple[str, tuple[str, ...]]]:
    """``[(name, spaces)]``: a joint model ``("a", "b")`` or ``"a+b"`` is named ``"a+b"``."""
    if models is None:
        models = list(available)
    elif isinstance(models, str):
        models = [models]
    specs = []
    for model in models:
        spaces = tuple(model.split("+")) if isinstance(model, str) else tuple(str(m) for m in model)
        unknown = [s for s in spaces if s not in available]
        if unknown or not spaces:
            raise ValueError(
                f"models names {unknown or model!r}, which features lacks; features has models {list(available)}. "
                f"Pass names from features.model, or tuples of them for joint models."
            )
        specs.append(("+".join(spaces), spaces))
    names = [name for name, _ in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"models lists {duplicated} more than once.")
    return specs


# features


def _align(features: xr.DataArray, responses: xr.DataArray) -> xr.DataArray:
    from neurotask.fmri import align

    return align(features, responses)


def _design(aligned: xr.DataArray, spaces: tuple[str, ...]) -> np.ndarray:
    """One model's (trial, feature) design as float32 numpy, checked finite."""
    parts = []
    for space in spaces:
        values = np.asarray(aligned.sel(model=space).values, dtype=np.float32)
        bad = ~np.isfinite(values)
        if bad.any():
            trials, columns = np.nonzero(bad)
            images = pd.unique(aligned["image"].values[trials].astype(str))
            raise ValueError(
                f"features of model {space!r} hold {int(bad.sum())} NaN/inf values, in images {list(images[:5])} "
                f"(features {sorted(set(columns.tolist()))[:5]}); fix or drop those images before fitting."
            )
        parts.append(values)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------------------------
# chunk kernel


@contextmanager
def _blas_threads(limit: int | None) -> Iterator[None]:
    if limit is None:
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def _check_block(y: np.ndarray, split: Split, start: int, voxel_labels: pd.DataFrame) -> None:
    bad = ~np.isfinite(y)
    if bad.any():
        voxels = np.flatnonzero(bad.any(axis=0))
        raise ValueError(
            f"responses hold NaN/inf in {voxels.size} voxels (positions {(start + voxels[:5]).tolist()}, "
            f"{voxel_labels.iloc[voxels[:5]].to_dict('records')}) over {int(bad.any(axis=1).sum())} trials; "
            f"mask or impute them before fitting."
        )
    train = y[split.train_index]
    constant = np.flatnonzero(np.all(train == train[:1], axis=0))
    if constant.size:
        raise ValueError(
            f"{constant.size} voxels are constant over the training trials (positions "
            f"{(start + constant[:5]).tolist()}, {voxel_labels.iloc[constant[:5]].to_dict('records')}); "
            f"drop them from responses before fitting."
        )


def _fit_block(
    y: np.ndarray,
    factors: Sequence[ridge.RidgeFactors],
    split: Split,
    alphas: np.ndarray,
    solver: str,
    variables: Sequence[str],
    start: int,
    voxel_labels: pd.DataFrame,
    blas_threads: int | None,
) -> np.ndarray:
    """Fit every model of a group on one voxel chunk; returns (model, variable, voxel) float32."""
    y = np.asarray(y, dtype=np.float32)
    with _blas_threads(blas_threads):
        _check_block(y, split, start, voxel_labels)
        y_train, y_test = y[split.train_index], y[split.test_index]
        out = np.empty((len(factors), len(variables), y.shape[1]), dtype=np.float32)
        for m, model_factors in enumerate(factors):
            scores = ridge.fit_ridge_chunk(model_factors, y_train, y_test, alphas, solver)
            for v, name in enumerate(variables):
                out[m, v] = scores[name]
    return out


# --------------------------------------------------------------------------------------------
# factors on a Dask cluster: one task per decomposition, results kept on the workers


def _remote_prepare(x_train, x_test, standardize):  # noqa: ANN001, ANN202
    with _blas_threads(1):
        design, test_design, offset, scale = ridge.standardize_features(x_train, x_test, standardize=standardize)
        return design, test_design, offset, scale, ridge.training_gram(design)


def _remote_fold_eigh(prepared, bounds, fold):  # noqa: ANN001, ANN202
    with _blas_threads(1):
        return ridge.fold_eigh(prepared[0], bounds, fold, prepared[4])


def _remote_fold_solutions(eigh, alphas):  # noqa: ANN001, ANN202
    with _blas_threads(1):
        out = np.empty((alphas.size, *eigh[2].shape), dtype=np.float32)
        ridge.fold_solutions(eigh, alphas, out)
        return out


def _remote_full(prepared):  # noqa: ANN001, ANN202
    with _blas_threads(1):
        return ridge.decompose_training(prepared[4], prepared[1])


def _remote_assemble(prepared, bounds, alphas, full, eighs, solutions):  # noqa: ANN001, ANN202
    design, _, offset, scale, _ = prepared
    # the alpha blocks' rows as one list per fold: no copy of the (n_alphas, n_val, k) solutions
    folds = tuple(ridge.FoldFactors(alphas, [s for block in blocks for s in block], eigh[3])
                  for eigh, blocks in zip(eighs, solutions))
    return ridge.RidgeFactors(design, bounds, folds, *full, offset, scale)


def _submit_factors(
    client: Any, x_train: np.ndarray, x_test: np.ndarray, split: Split, alphas: np.ndarray, standardize: bool,
    solver: str,
) -> Any:
    from neurotask.cluster import submit_with_data

    # the features travel inside the task, not scattered: every factor stays recomputable after a lost worker
    prepared = submit_with_data(client, _remote_prepare, x_train, x_test, standardize)
    n_folds = len(split.bounds) - 1 if solver == "kfold" else 0
    # decompositions before products (priority): every worker then has an eigh to run while
    # the others finish, and the last product ends with the last decomposition's
    full = client.submit(_remote_full, prepared, pure=False, priority=1)
    eighs = [client.submit(_remote_fold_eigh, prepared, split.bounds, f, pure=False, priority=1)
             for f in range(n_folds)]
    # the per-alpha products as (fold, alpha block) tasks, so every worker thread gets a share
    blocks = ridge.alpha_blocks(alphas.size, sum(client.nthreads().values()))
    solutions = [[client.submit(_remote_fold_solutions, eigh, alphas[block], pure=False) for block in blocks]
                 for eigh in eighs]
    return client.submit(_remote_assemble, prepared, split.bounds, alphas, full, eighs, solutions, pure=False)


# --------------------------------------------------------------------------------------------
# orchestration


def _current_client(client: Any) -> Any:
    if client is not None:
        return client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _groups(sizes: list[int], budget: int) -> list[list[int]]:
    groups: list[list[int]] = [[]]
    used = 0
    for index, size in enumerate(sizes):
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += size
    return groups


def _progress(enabled: bool, total: int, description: str):  # noqa: ANN202
    from rich.progress import Progress

    progress = Progress(disable=not enabled, transient=True)
    task = progress.add_task(description, total=total)
    return progress, task


def _voxel_labels(responses: xr.DataArray) -> pd.DataFrame:
    names = [c for c in ("i", "j", "k", "roi") if c in responses.coords and responses[c].dims == ("voxel",)]
    return pd.DataFrame({c: responses[c].values for c in names})


def _run_local(  # noqa: ANN202
    designs, split, alphas, solver, variables, standardize, responses, groups, chunk, progress  # noqa: ANN001
):
    n_voxels = responses.sizes["voxel"]
    out = np.empty((len(designs), len(variables), n_voxels), dtype=np.float32)
    labels = _voxel_labels(responses)
    slices = list(stores.iter_chunks(n_voxels, chunk))
    bar, task = _progress(progress, len(groups) * len(slices), "ridge: voxel chunks")
    threads = ridge.n_cores()

    def read(sl: slice) -> np.ndarray:
        return np.asarray(responses.isel(voxel=sl).values)

    # a reader thread keeps the next chunk loading (zarr decompression releases the GIL) while
    # the cores fit the current one: at most two chunks in memory
    with bar, ThreadPoolExecutor(threads) as pool, ThreadPoolExecutor(1) as reader:
        for group in groups:
            pending = reader.submit(read, slices[0])
            factors = [
                ridge.make_ridge_factors(designs[m][split.train_index], designs[m][split.test_index], split.bounds,
                                         alphas=alphas, standardize=standardize[m], folds=solver == "kfold")
                for m in group
            ]
            for i, sl in enumerate(slices):
                y = pending.result()
                if i + 1 < len(slices):
                    pending = reader.submit(read, slices[i + 1])
                # one slice of the chunk per core, each on single-threaded BLAS: independent GEMMs
                # keep their speed when another process takes a core; multithreaded OpenBLAS
                # stalls at its barriers then
                parts = [p for p in np.array_split(np.arange(y.shape[1]), threads) if p.size]
                with threadpool_limits(limits=1, user_api="blas"):
                    blocks = pool.map(
                        lambda p: _fit_block(y[:, p], factors, split, alphas, solver, variables, sl.start + p[0],
                                             labels.iloc[sl].iloc[p], None),
                        parts,
                    )
                    out[group, :, sl] = np.concatenate(list(blocks), axis=2)
                bar.advance(task)
    return out


def _run_cluster(  # noqa: ANN202
    client, designs, split, alphas, solver, variables, standardize, responses, groups, chunk, progress  # noqa: ANN001
):
    from distributed import as_completed

    n_voxels = responses.sizes["voxel"]
    out = np.empty((len(designs), len(variables), n_voxels), dtype=np.float32)
    labels = _voxel_labels(responses)
    data = responses.data if isinstance(responses.data, da.Array) else da.from_array(np.asarray(responses.data))
    blocks = data.rechunk((-1, chunk)).to_delayed()[0]
    slices = list(stores.iter_chunks(n_voxels, chunk))
    from neurotask.cluster import submit_with_data

    split_f = submit_with_data(client, lambda value: value, split)  # recomputable, unlike scattered data
    bar, task = _progress(progress, len(groups) * len(slices), "ridge: voxel chunks")
    with bar:
        for group in groups:
            factors = [_submit_factors(client, designs[m][split.train_index], designs[m][split.test_index], split,
                                       alphas, standardize[m], solver) for m in group]
            tasks = [
                dask.delayed(_fit_block, pure=True)(block, factors, split_f, alphas, solver, variables, sl.start,
                                                    labels.iloc[sl], 1)
                for block, sl in zip(blocks, slices)
            ]
            futures = client.compute(tasks)
            where = {future.key: sl for future, sl in zip(futures, slices)}
            for future, values in as_completed(futures, with_results=True):
                out[group, :, where[future.key]] = values
                bar.advance(task)
            del factors, tasks, futures  # release this group's factors on the workers
    return out


def _default_chunk(responses: xr.DataArray, client: Any) -> int:
    n_voxels = responses.sizes["voxel"]
    chunk = responses.data.chunksize[1] if isinstance(responses.data, da.Array) else 4096
    if client is not None:
        # enough chunks to keep every worker thread busy and even out the last ones' finish,
        # but wide enough for efficient GEMMs
        threads = sum(client.nthreads().values()) or 1
        target = max(512, math.ceil(n_voxels / (8 * threads)))
        if target < chunk:
            # a divisor of the stored chunk: each task then reads a part of one stored chunk
            # (2500-voxel tasks over 4096-voxel chunks cost 10% more than 2048-voxel ones)
            divisors = [p for p in range(math.ceil(chunk / target), chunk // 256 + 1) if chunk % p == 0]
            chunk = chunk // divisors[0] if divisors else target
    return int(min(chunk, n_voxels))


def fit(
    features: xr.DataArray,
    responses: xr.DataArray,
    models: Sequence[str | Sequence[str]] | str | None = None,
    *,
    test_sessions: Any = None,
    test_fraction: float | None = None,
    seed: int = 0,
    alphas: Sequence[float] | np.ndarray | None = None,
    cv: int | str = 5,
    standardize: bool = False,
    scoring: Sequence[str] = ("r2", "r"),
    voxel_chunk: int | None = None,
    factor_memory: int = 2 << 30,
    client: Any = None,
    store: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Fit voxelwise ridge encoding models and score them on held-out trials (computes).

    For each model, a ridge regression from its features to every voxel: features and
    responses centered with training means (features optionally standardized); each voxel's
    alpha chosen from ``alphas`` by K-fold cross-validation on the training trials (folds
    grouped by session, or by run when there are fewer training sessions than folds; inside
    each fold, centering uses that fold's training means; score = validation R² averaged over
    folds; ties go to the larger alpha), or by GCV; refit on all training trials with that
    alpha; test-set R² and Pearson r per voxel.

    Parameters
    ----------
    features : xarray.DataArray, dims (model, image, feature)
        Features (e.g. :func:`neurotask.open_features`); trials are matched to images by id.
    responses : xarray.DataArray, dims (trial, voxel)
        Responses with ``image``, ``session``, ``run`` on trial (e.g. :func:`neurotask.open_responses`).
    models : sequence of str or of tuples of str, optional
        Models to fit; default every model of ``features``. A tuple ``("autoencoding",
        "depth_euclidean")`` (or the string ``"autoencoding+depth_euclidean"``) is a joint model:
        its spaces' features are concatenated, each feature standardized with training
        statistics, and it is named ``"autoencoding+depth_euclidean"``.
    test_sessions : session label or sequence of them, optional
        Held-out sessions; default the last session (in sorted order).
    test_fraction : float, optional
        Instead of sessions, hold out this fraction of the images (all their presentations),
        drawn with ``seed``.
    seed : int
        Seed of the ``test_fraction`` draw.
    alphas : sequence of float, optional
        Alpha grid; default ``np.logspace(-2, 7, 19)``.
    cv : int or "gcv"
        Number of folds (>= 2), or ``"gcv"`` for generalized cross-validation on the whole
        training set (faster, not grouped by session).
    standardize : bool
        Scale single models' features to unit training variance (joint models always are).
    scoring : sequence of {"r2", "r"}
        Test-set scores to report.
    voxel_chunk : int, optional
        Voxels per task; default the responses' voxel chunk (capped so a cluster's threads all
        get work).
    factor_memory : int
        Bytes of per-model factors held at once; models are processed in groups under it and
        each voxel chunk is read once per group.
    client : distributed.Client, optional
        Run on this client; default the current client if any, else in this process.
    store : path-like, optional
        Also write the results to this zarr store (resumable schema of :mod:`neurotask.stores`)
        and return it opened.
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        ``r2``, ``r``, ``alpha``, ``cv_r2`` (model, voxel) float32 with the responses' voxel
        coords; ``is_test`` and ``fold`` (trial) with the responses' trial coords; attrs
        ``split`` and ``alphas`` (JSON), ``cv``, ``standardize`` and provenance.

    Examples
    --------
    >>> from neurotask.datasets import make_synthetic_features
    >>> feats = make_synthetic_features(["normal", "class_object"], 60, n_features=16)
    >>> rng = np.random.default_rng(0)
    >>> trials = {"image": ("trial", np.tile(feats.image.values, 2)), "session": ("trial", np.repeat(np.arange(6), 20)),
    ...           "run": ("trial", np.zeros(120, int))}
    >>> voxels = {"i": ("voxel", np.arange(5)), "j": ("voxel", np.zeros(5, int)), "k": ("voxel", np.zeros(5, int))}
    >>> resp = xr.DataArray(rng.standard_normal((120, 5)).astype("float32"), dims=("trial", "voxel"),
    ...                     coords={**trials, **voxels})
    >>> fit(feats, resp, progress=False).r2.dims
    ('model', 'voxel')
    """
    features = stores.validate_features(features, name="features")
    responses = stores.validate_responses(responses, name="responses")
    solver = _check_cv(cv)
    alphas = _check_alphas(alphas)
    unknown = [s for s in scoring if s not in SCORINGS]
    if unknown or not scoring:
        raise ValueError(f"unknown scoring {unknown or scoring!r}; expected names from {sorted(SCORINGS)}.")
    if voxel_chunk is not None and voxel_chunk < 1:
        raise ValueError(f"voxel_chunk must be a positive int; got {voxel_chunk}.")
    specs = _model_specs(models, [str(m) for m in features["model"].values])
    split = make_split(responses, test_sessions, test_fraction, seed, solver, cv if solver == "kfold" else 0)
    aligned = _align(features, responses)
    designs = [_design(aligned, spaces) for _, spaces in specs]
    standardize_by_model = [standardize or len(spaces) > 1 for _, spaces in specs]
    n_folds = len(split.bounds) - 1 if solver == "kfold" else 0
    sizes = [ridge.factors_nbytes(split.train_index.size, split.test_index.size, d.shape[1], n_folds, alphas.size)
             for d in designs]
    groups = _groups(sizes, factor_memory)
    client = _current_client(client)
    chunk = voxel_chunk or _default_chunk(responses, client)
    variables = [*scoring, "alpha", "cv_r2"]
    run_args = (designs, split, alphas, solver, variables, standardize_by_model, responses, groups, chunk, progress)
    values = _run_cluster(client, *run_args) if client is not None else _run_local(*run_args)

    voxel_coords = {str(c): responses[c].compute() for c in responses.coords if responses[c].dims == ("voxel",)}
    trial_coords = {str(c): responses[c].compute() for c in responses.coords if responses[c].dims == ("trial",)}
    results = xr.Dataset(
        {name: (("model", "voxel"), values[:, v], _VARIABLE_ATTRS[name]) for v, name in enumerate(variables)},
        coords={"model": [name for name, _ in specs], **voxel_coords},
    )
    results["is_test"] = xr.DataArray(split.is_test, dims="trial", coords=trial_coords,
                                      attrs={"long_name": "trial held out for testing"})
    results["fold"] = xr.DataArray(split.fold, dims="trial", attrs={"long_name": "cross-validation fold (-1: test)"})
    parameters = {
        "models": [name for name, _ in specs], "test_sessions": test_sessions, "test_fraction": test_fraction,
        "seed": seed, "alphas": alphas.tolist(), "cv": cv, "standardize": standardize, "scoring": list(scoring),
    }
    inputs = {
        "features_images": stores.sha256_array(features["image"].values.astype(str)),
        "responses_trials": stores.sha256_array(responses["image"].values.astype(str)),
        "responses_voxels": stores.sha256_array(np.stack([responses[c].values for c in ("i", "j", "k")])),
    }
    results.attrs.update(
        split=json.dumps(split.info, default=str), alphas=json.dumps(alphas.tolist()), cv=str(cv),
        standardize=bool(standardize), **stores.provenance(parameters, inputs),
    )
    if store is None:
        return results
    stores.write_dataset(store, results, parameters=parameters, inputs=inputs,
                         chunks={"model": -1, "voxel": 4096, "trial": -1}, region_dim="voxel")
    return stores.open_results(store)


# --------------------------------------------------------------------------------------------
# predictions on demand


def _prediction_factors(
    aligned: xr.DataArray, spaces: tuple[str, ...], train: np.ndarray, test: np.ndarray, standardize: bool
) -> ridge.RidgeFactors:
    """One model's refit factors on all training trials (no folds), for :func:`predict`."""
    design = _design(aligned, spaces)
    return ridge.make_ridge_factors(design[train], design[test], [0, train.size], standardize=standardize, folds=False)


def _predict_block(y: np.ndarray, factors: ridge.RidgeFactors, train: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    with _blas_threads(1):
        return ridge.predict_ridge(factors, np.asarray(y, dtype=np.float32)[train], alpha).astype(np.float32)


def predict(
    results: xr.Dataset,
    features: xr.DataArray,
    responses: xr.DataArray,
    models: Sequence[str] | None = None,
) -> xr.DataArray:
    """Test-set predictions of fitted encoding models, recomputed lazily per voxel chunk.

    Each model's whole-training decomposition is computed now (one eigendecomposition per
    model); the predictions are a lazy dask array, one task per voxel chunk of ``responses``.

    Parameters
    ----------
    results : xarray.Dataset
        From :func:`fit`: ``alpha (model, voxel)``, ``is_test (trial)``, attr ``standardize``.
    features : xarray.DataArray, dims (model, image, feature)
        The features the results were fitted on.
    responses : xarray.DataArray, dims (trial, voxel)
        The responses the results were fitted on.
    models : sequence of str, optional
        Subset of ``results.model``; default all.

    Returns
    -------
    xarray.DataArray, dims (model, trial, voxel), float32
        ``prediction`` over the test trials, in the order of ``responses.isel(trial=is_test)``.
    """
    features = stores.validate_features(features, name="features")
    responses = stores.validate_responses(responses, name="responses")
    for name in ("alpha", "is_test"):
        if name not in results:
            raise ValueError(f"results lacks {name!r}; pass the Dataset returned by nt.encoding.fit.")
    is_test = np.asarray(results["is_test"].values, dtype=bool)
    if is_test.shape != (responses.sizes["trial"],) or results.sizes["voxel"] != responses.sizes["voxel"]:
        raise ValueError(
            f"results were fitted on {is_test.size} trials x {results.sizes['voxel']} voxels but responses has "
            f"{responses.sizes['trial']} x {responses.sizes['voxel']}; pass the responses the results were fitted on."
        )
    fitted = [str(m) for m in results["model"].values]
    names = fitted if models is None else [str(m) for m in models]
    missing = [m for m in names if m not in fitted]
    if missing:
        raise ValueError(f"models {missing} are not in results (it has {fitted}).")
    specs = _model_specs(names, [str(m) for m in features["model"].values])
    standardize = bool(results.attrs.get("standardize", False))
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    aligned = _align(features, responses)
    data = responses.data if isinstance(responses.data, da.Array) else da.from_array(np.asarray(responses.data))
    data = data.rechunk((-1, data.chunksize[1]))
    columns = np.cumsum((0,) + data.chunks[1])
    stacked = []
    for name, spaces in specs:
        # the decomposition is a task of the graph (run once, where the graph runs), not data
        # embedded in it: ~50 MB of factors per model would otherwise travel through the scheduler
        factors_key = dask.delayed(_prediction_factors, pure=True)(
            aligned.sel(model=list(spaces)), spaces, train, test, standardize or len(spaces) > 1
        )
        alpha = results["alpha"].sel(model=name).values
        blocks = [
            da.from_delayed(dask.delayed(_predict_block)(block, factors_key, train, alpha[start:stop]),
                            shape=(test.size, stop - start), dtype=np.float32)
            for block, start, stop in zip(data.to_delayed()[0], columns[:-1], columns[1:])
        ]
        stacked.append(da.concatenate(blocks, axis=1))
    test_responses = responses.isel(trial=test)
    coords = {str(c): test_responses[c] for c in test_responses.coords}
    return xr.DataArray(
        da.stack(stacked, axis=0), dims=("model", "trial", "voxel"), coords={"model": names, **coords},
        name="prediction",
        attrs={"long_name": "ridge prediction of the test responses", "units": responses.attrs.get("units", "")},
    )
