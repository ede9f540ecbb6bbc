"""Voxelwise ridge encoding: argument checks, the fit, and the results it returns.

:func:`fit` follows DESIGN §3 (Encoding) and §6 (Execution):

1. the models and their feature spaces, each model's design aligned to the responses' trials
   by image id (:mod:`neurotask.encoding.design`);
2. split trials into training and test, and training trials into folds, with no image on both
   sides (:mod:`neurotask.encoding.split`);
3. per group of models whose factors fit in ``factor_memory``: each model's decompositions once
   (:mod:`neurotask.encoding.ridge`), then voxel chunks, each read once for all models of the
   group, through GEMM-only kernels, in this process or on a Dask client
   (:mod:`neurotask.encoding.executor`);
4. the results: per-voxel scores, the split, and the test predictions that the permutation null
   needs (so :func:`neurotask.stats.permutation_test` runs without the features). With
   ``store=``, the predictions are written to the store chunk by chunk as the fit produces them,
   so memory holds one voxel chunk of them, not all (≈ 25 models × 370 trials × 145k voxels × 4 B
   = 5.4 GB for a full subject).

The kernels run in numpy or torch (``backend``, ``device``: :mod:`neurotask.backend`); the
results record which in attrs ``backend``, ``device`` and ``allow_tf32``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from neurotask import backend as backends
from neurotask import execution, stores
from neurotask.encoding import ridge
from neurotask.encoding.design import ModelSpec, aligned_features, design_matrix, model_specs, spaces_coord
from neurotask.encoding.executor import FitPlan, default_chunk, model_groups, on_torch, run_cluster, run_local
from neurotask.encoding.scoring import SCORINGS
from neurotask.encoding.split import DEFAULT_CV, REPEATS, Split, make_split

__all__ = ["DEFAULT_ALPHAS", "fit"]

#: The default alpha grid (DESIGN §3).
DEFAULT_ALPHAS = np.logspace(-2, 7, 19)

_VARIABLE_ATTRS = {
    "r2": {"long_name": "test-set R²", "units": "1", "method": "1 - SS_res / SS_tot (about the test mean)"},
    "r": {"long_name": "test-set Pearson r", "units": "1", "method": "Pearson correlation of prediction and response"},
    "alpha": {"long_name": "ridge alpha", "units": "1", "method": "per-voxel alpha chosen by cross-validation"},
    "cv_r2": {"long_name": "cross-validation R² at the chosen alpha", "units": "1",
              "method": "validation R² averaged over folds (GCV estimate for cv='gcv')"},
}

#: Split counts copied from the split into the results' attrs.
_SPLIT_ATTRS = ("cv_folds", "cv_rule", "repeats", "n_test_trials_dropped", "n_train_trials_dropped",
                "n_cv_trials_moved")


def _check_cv(cv: int | str | None) -> tuple[str, int]:
    """``(solver, n_folds)`` of a ``cv`` argument (None: the default K-fold)."""
    if cv is None:
        return "kfold", DEFAULT_CV
    if cv == "gcv":
        return "gcv", 0
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool) and cv >= 2:
        return "kfold", int(cv)
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


def _check_options(scoring: Sequence[str], voxel_chunk: int | None, repeats: str) -> None:
    unknown = [s for s in scoring if s not in SCORINGS]
    if unknown or not scoring:
        raise ValueError(f"unknown scoring {unknown or scoring!r}; expected names from {sorted(SCORINGS)}.")
    if voxel_chunk is not None and voxel_chunk < 1:
        raise ValueError(f"voxel_chunk must be a positive int; got {voxel_chunk}.")
    if repeats not in REPEATS:
        raise ValueError(f"unknown repeats {repeats!r}; expected one of {sorted(REPEATS)}.")


def _plan(
    features: xr.DataArray, responses: xr.DataArray, specs: list[ModelSpec], split: Split, alphas: np.ndarray,
    solver: str, options: dict[str, Any], chunk: int,
) -> FitPlan:
    """The :class:`FitPlan`: designs, model groups under ``factor_memory``, backend."""
    designs = [design_matrix(aligned_features(features, responses, spec.spaces), spec.spaces) for spec in specs]
    n_folds = len(split.bounds) - 1 if solver == "kfold" else 0
    sizes = [ridge.factors_nbytes(split.train_index.size, split.test_index.size, d.shape[1], n_folds, alphas.size)
             for d in designs]
    return FitPlan(
        designs=designs, standardize=[options["standardize"] or spec.joint for spec in specs], split=split,
        alphas=alphas, solver=solver, variables=[*options["scoring"], "alpha", "cv_r2"],
        groups=model_groups(sizes, options["factor_memory"]), chunk=chunk, predictions=options["predictions"],
        backend=options["backend"], device_batch=options["device_batch"],
    )


def _inputs(features: xr.DataArray, responses: xr.DataArray) -> dict[str, str]:
    voxel = [c for c in ("i", "j", "k") if c in responses.coords]
    return {
        "features_images": stores.sha256_array(features["image"].values.astype(str)),
        "responses_trials": stores.sha256_array(responses["image"].values.astype(str)),
        "responses_voxels": stores.sha256_array(np.stack([responses[c].values for c in voxel]) if voxel
                                                else np.arange(responses.sizes["voxel"])),
    }


def _assemble(
    values: Any, predictions: Any, plan: FitPlan, specs: list[ModelSpec], responses: xr.DataArray,
    parameters: dict[str, Any], inputs: dict[str, str], backend_attrs: dict[str, Any],
) -> xr.Dataset:
    """The results Dataset (module docstring, step 4) from the (model, variable, voxel) ``values`` and
    (model, test trial, voxel) ``predictions`` (None: not kept), numpy or lazy."""
    split = plan.split
    voxel_coords = {str(c): responses[c].compute() for c in responses.coords if responses[c].dims == ("voxel",)}
    trial_coords = {str(c): responses[c].compute() for c in responses.coords if responses[c].dims == ("trial",)}
    results = xr.Dataset(
        {name: (("model", "voxel"), values[:, v], _VARIABLE_ATTRS[name])
         for v, name in enumerate(plan.variables)},
        coords={"model": [spec.name for spec in specs], "spaces": spaces_coord(specs), **voxel_coords},
    )
    results["is_test"] = xr.DataArray(split.is_test, dims="trial", coords=trial_coords,
                                      attrs={"long_name": "trial scored as a test trial"})
    results["fold"] = xr.DataArray(split.fold, dims="trial", attrs={
        "long_name": "cross-validation fold (-1: test, -2: left out, its image on both sides of the split)"})
    if predictions is not None:
        results["prediction"] = xr.DataArray(
            predictions, dims=("model", "test_trial", "voxel"),
            coords={"test_trial": ("test_trial", split.test_index, {"long_name": "position of the test trial"}),
                    "test_image": ("test_trial", responses["image"].values[split.test_index].astype(str))},
            attrs={"long_name": "ridge prediction of the test responses", "units": responses.attrs.get("units", "")},
        )
    results.attrs.update(
        split=json.dumps(split.info, default=str), alphas=json.dumps(plan.alphas.tolist()), cv=str(parameters["cv"]),
        standardize=bool(parameters["standardize"]), **{k: split.info[k] for k in _SPLIT_ATTRS},
        **backend_attrs, **stores.provenance(parameters, inputs),
    )
    return results


def _backend_attrs(plan: FitPlan, client: Any) -> dict[str, Any]:
    """``backend``, ``device``, ``allow_tf32`` of the fit (on a client: the path its tasks take)."""
    if client is None:
        return plan.backend.attrs
    if not on_torch(plan, client):
        return {"backend": "numpy", "device": "cpu", "allow_tf32": plan.backend.allow_tf32}
    if plan.backend.name == "auto":  # each task resolved it where it ran
        return {"backend": "auto (each worker's: torch on CUDA when it sees a GPU, else numpy)",
                "device": plan.backend.device, "allow_tf32": plan.backend.allow_tf32}
    return {"backend": "torch", "device": plan.backend.device, "allow_tf32": plan.backend.allow_tf32}


#: Store chunks of the results: one model per chunk, so a group's predictions are whole chunks.
_STORE_CHUNKS = {"model": 1, "trial": -1, "test_trial": -1}


def _fit_to_store(store: str | os.PathLike[str], run: Any, plan: FitPlan, specs: list[ModelSpec],
                  responses: xr.DataArray, parameters: dict[str, Any], inputs: dict[str, str],
                  backend_attrs: dict[str, Any]) -> xr.Dataset:
    """Fit with the test predictions written to ``store`` chunk by chunk (memory: one voxel chunk of them)."""
    n_models, n_voxels, n_test = len(specs), responses.sizes["voxel"], plan.split.test_index.size
    template = _assemble(
        da.zeros((n_models, len(plan.variables), n_voxels), dtype=np.float32, chunks=(1, -1, plan.chunk)),
        da.zeros((n_models, n_test, n_voxels), dtype=np.float32, chunks=(1, -1, plan.chunk)),
        plan, specs, responses, parameters, inputs, backend_attrs)
    writer = stores.RegionWriter(store, template, region_dims=["voxel"], chunks={**_STORE_CHUNKS, "voxel": plan.chunk},
                                 parameters=parameters, inputs=inputs, overwrite=True)

    def sink(group: list[int], voxels: slice, block: np.ndarray) -> None:
        region = {"model": slice(group[0], group[-1] + 1), "test_trial": slice(0, n_test), "voxel": voxels}
        xr.Dataset({"prediction": (("model", "test_trial", "voxel"), block)}).to_zarr(
            store, region=region, consolidated=False)

    outputs = run(plan, responses, sink)
    results = _assemble(outputs.values, None, plan, specs, responses, parameters, inputs, backend_attrs)
    for region in writer.regions():
        writer.write(results[plan.variables].isel(region), region)
    rest = [v for v in results.data_vars if "voxel" not in results[v].dims]
    results[rest].drop_vars([c for c in results[rest].coords]).to_zarr(store, mode="r+", consolidated=False)
    writer.finalize()
    return stores.open_results(store)


def fit(
    features: xr.DataArray,
    responses: xr.DataArray,
    models: Sequence[str | Sequence[str]] | str | None = None,
    *,
    test_sessions: Any = None,
    test_fraction: float | None = None,
    seed: int = 0,
    alphas: Sequence[float] | np.ndarray | None = None,
    cv: int | str | None = None,
    repeats: str = "drop-test",
    standardize: bool = False,
    scoring: Sequence[str] = ("r2", "r"),
    predictions: bool = True,
    voxel_chunk: int | None = None,
    factor_memory: int = 2 << 30,
    client: Any = None,
    store: str | os.PathLike[str] | None = None,
    progress: bool = True,
    backend: str = "numpy",
    device: str = "auto",
    allow_tf32: bool = False,
    device_batch: int | None = None,
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
        Features with ``model`` and ``image`` coords; trials are matched to images by id.
    responses : xarray.DataArray, dims (trial, voxel)
        Responses with ``image`` and ``session`` on trial (``run`` optional: one per session).
    models : sequence of str or of tuples of str, optional
        Models to fit; default every model of ``features``. A tuple ``("autoencoding",
        "depth_euclidean")`` (or the string ``"autoencoding+depth_euclidean"``) is a joint model:
        its spaces' features are concatenated, each feature standardized with training
        statistics; it is named ``"autoencoding+depth_euclidean"`` and its ``spaces`` coord lists
        the spaces (read with :func:`neurotask.encoding.model_spaces`).
    test_sessions : session label or sequence of them, optional
        Held-out sessions; default the last session (in sorted order).
    test_fraction : float, optional
        Instead of sessions, hold out this fraction of the images (all their presentations),
        drawn with ``seed``.
    seed : int
        Seed of the ``test_fraction`` draw.
    alphas : sequence of float, optional
        Alpha grid; default ``np.logspace(-2, 7, 19)``.
    cv : int or "gcv", optional
        Number of folds (>= 2), or ``"gcv"`` for generalized cross-validation on the whole
        training set (faster, not grouped by session). Default 5 folds, or leave-one-group-out
        when the training set has fewer groups (recorded in attrs ``cv_folds``, ``cv_rule``);
        an explicit number that the groups cannot honour is an error.
    repeats : {"drop-test", "drop-train", "keep"}
        Images presented both in training and in test: leave their test trials out of the
        scores (default), leave their training trials out of the fit, or keep every trial.
        Unless "keep", the cross-validation folds also keep each image's presentations together.
    standardize : bool
        Scale single models' features to unit training variance (joint models always are).
    scoring : sequence of {"r2", "r"}
        Test-set scores to report.
    predictions : bool
        Keep the test predictions in the results (``prediction``), which the permutation null needs.
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
        and return it opened; the test predictions are written chunk by chunk during the fit
        (one model and ``voxel_chunk`` voxels per stored chunk), never all held in memory.
    progress : bool
        Show progress.
    backend : {"numpy", "torch", "auto"}
        Array backend of the kernels: numpy, or torch (same algorithms: float64 decompositions,
        float32 GEMMs). ``"auto"``: torch on CUDA where the process running the work sees a GPU
        (on a client: each task resolves it where it runs, when the workers advertise a ``GPU``
        resource or see CUDA), else numpy.
    device : {"auto", "cpu", "cuda"} or "cuda:N"
        Torch device; ``"auto"``: CUDA when available where the work runs, else the CPU.
    allow_tf32 : bool
        Let CUDA GEMMs use TF32 (faster, ~1e-3 relative error); off by default, recorded in attrs.
    device_batch : int, optional
        Cap on voxel columns per torch step; default as many as fit in half the device's free
        memory (CUDA) or the whole chunk (CPU).

    Returns
    -------
    xarray.Dataset
        ``r2``, ``r``, ``alpha``, ``cv_r2`` (model, voxel) float32 with the responses' voxel
        coords and ``spaces`` on model; ``is_test`` and ``fold`` (trial) with the responses' trial
        coords; ``prediction`` (model, test_trial, voxel) float32 with ``test_trial`` (trial
        positions) and ``test_image``; attrs ``split`` and ``alphas`` (JSON), ``cv``, ``cv_folds``,
        ``cv_rule``, ``repeats``, ``n_test_trials_dropped``, ``n_train_trials_dropped``,
        ``n_cv_trials_moved``, ``standardize``, ``backend``, ``device``, ``allow_tf32`` and provenance.

    Examples
    --------
    >>> from neurotask.datasets import make_synthetic_features
    >>> feats = make_synthetic_features(["normal", "class_object"], 120, n_features=16)
    >>> rng = np.random.default_rng(0)
    >>> trials = {"image": ("trial", feats.image.values), "session": ("trial", np.repeat(np.arange(6), 20))}
    >>> resp = xr.DataArray(rng.standard_normal((120, 5)).astype("float32"), dims=("trial", "voxel"), coords=trials)
    >>> fit(feats, resp, progress=False).r2.dims
    ('model', 'voxel')
    """
    features = stores.validate_features(features, name="features")
    responses = stores.validate_responses(responses, name="responses")
    solver, n_folds = _check_cv(cv)
    alphas = _check_alphas(alphas)
    _check_options(scoring, voxel_chunk, repeats)
    backend_request = backends.check_backend(backend, device, allow_tf32, function="fit")
    if device_batch is not None and device_batch < 1:
        raise ValueError(f"device_batch must be a positive int; got {device_batch}.")
    specs = model_specs(models, [str(m) for m in features["model"].values])
    split = make_split(responses, test_sessions, test_fraction, seed, solver, n_folds, explicit_cv=cv is not None,
                       repeats=repeats)
    client = execution.current_client(client)
    options = {"standardize": standardize, "scoring": list(scoring), "factor_memory": factor_memory,
               "predictions": predictions, "backend": backend_request, "device_batch": device_batch}
    plan = _plan(features, responses, specs, split, alphas, solver, options,
                 voxel_chunk or default_chunk(responses, client))

    def run(plan: FitPlan, responses: xr.DataArray, sink: Any = None) -> Any:
        if client is not None:
            return run_cluster(client, plan, responses, progress, sink)
        return run_local(plan, responses, progress, sink)

    parameters = {
        "models": [spec.name for spec in specs], "test_sessions": test_sessions, "test_fraction": test_fraction,
        "seed": seed, "alphas": alphas.tolist(), "cv": DEFAULT_CV if cv is None else cv, "repeats": repeats,
        "standardize": standardize, "scoring": list(scoring),
    }
    inputs = _inputs(features, responses)
    backend_attrs = _backend_attrs(plan, client)
    if store is not None and predictions:
        return _fit_to_store(store, run, plan, specs, responses, parameters, inputs, backend_attrs)
    outputs = run(plan, responses)
    results = _assemble(outputs.values, outputs.predictions, plan, specs, responses, parameters, inputs,
                        backend_attrs)
    if store is None:
        return results
    stores.write_dataset(store, results, parameters=parameters, inputs=inputs,
                         chunks={"model": -1, "voxel": 4096, "trial": -1, "test_trial": -1}, region_dim="voxel")
    return stores.open_results(store)
